/* runner.c: the one Check runner. Each component's tests/test_<name>.c
 * provides mt_test_<name>_suite(); Check's fork mode keeps a crash inside
 * the test that caused it. */
#include <check.h>
#include <stdlib.h>

#include "tests.h"

int main(void)
{
    SRunner *sr = srunner_create(mt_test_common_suite());
    srunner_add_suite(sr, mt_test_reader_suite());
    srunner_add_suite(sr, mt_test_tracer_suite());
    srunner_add_suite(sr, mt_test_symbolize_suite());
    srunner_add_suite(sr, mt_test_reporters_suite());
    srunner_add_suite(sr, mt_test_flamegraph_suite());
    srunner_add_suite(sr, mt_test_export_suite());
    srunner_add_suite(sr, mt_test_aggregate_suite());
    srunner_add_suite(sr, mt_test_stages_suite());
    srunner_add_suite(sr, mt_test_window_suite());
    srunner_add_suite(sr, mt_test_filter_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
