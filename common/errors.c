/* errors.c: mt_strerror() and mt_err_name(), generated from the one error
 * table in memtrace.h. */
#include <string.h>

#include "memtrace/memtrace.h"

const char *mt_strerror(int err)
{
    switch (err) {
#define MT_ERR_TEXT_(name, value, text)                                        \
    case value:                                                                \
        return text;
        MT_ERRNO_MAP(MT_ERR_TEXT_)
#undef MT_ERR_TEXT_
    default:
        return err < 0 && err > -4000 ? strerror(-err) : "unknown error";
    }
}

const char *mt_err_name(int err)
{
    switch (err) {
#define MT_ERR_NAME_(name, value, text)                                        \
    case value:                                                                \
        return "MT_E" #name;
        MT_ERRNO_MAP(MT_ERR_NAME_)
#undef MT_ERR_NAME_
    default:
        return "MT_EUNKNOWN";
    }
}
