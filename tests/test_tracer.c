/* test_tracer.c: unit tests of tracer/ (being written). */
#include "tests.h"

Suite *mt_test_tracer_suite(void)
{
    return suite_create("tracer");
}
