/* tests.h: the suites the runner knows, one per component. */
#ifndef MT_TESTS_H
#define MT_TESTS_H
#include <check.h>

Suite *mt_test_common_suite(void);
Suite *mt_test_reader_suite(void);
Suite *mt_test_tracer_suite(void);
Suite *mt_test_symbolize_suite(void);
Suite *mt_test_reporters_suite(void);
Suite *mt_test_flamegraph_suite(void);
Suite *mt_test_export_suite(void);
Suite *mt_test_aggregate_suite(void);
Suite *mt_test_stages_suite(void);
Suite *mt_test_window_suite(void);

#endif
Suite *mt_test_filter_suite(void);
