/* text.c: helpers of the text reports: human-readable sizes, and printing
 * names from the profiled program without letting their bytes drive the
 * user's terminal (an escape sequence in a function name must not clear the
 * screen or retitle the window). */
#include <inttypes.h>
#include <stdio.h>

#include "json.h"
#include "memtrace/reporters.h"

char *mt_format_size(uint64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB",
                                        "TiB", "PiB", "EiB"};
    if (bytes < 1024) {
        snprintf(buf, len, "%" PRIu64 " B", bytes);
        return buf;
    }
    double v = (double)bytes;
    unsigned u = 0;
    while (v >= 1024.0 && u < 6) {
        v /= 1024.0;
        u++;
    }
    /* 1048575 B is 1023.999 KiB, which one decimal would show as
     * "1024.0 KiB": say "1.0 MiB" instead. */
    if (v >= 1023.95 && u < 6) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, len, "%.1f %s", v, units[u]);
    return buf;
}

int mt_fputs_escaped(const char *str, FILE *out)
{
    if (!str)
        return 0;
    const unsigned char *s = (const unsigned char *)str;
    size_t len = 0;
    while (s[len])
        len++;
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        while (run < len && s[run] >= 0x20 && s[run] < 0x7f)
            run++;
        if (run > i && fwrite(s + i, 1, run - i, out) != run - i)
            return -1;
        i = run;
        if (i >= len)
            break;
        size_t n = 0;
        uint32_t cp = 0;
        if (s[i] >= 0x80)
            n = mt__utf8_decode(s + i, len - i, &cp);
        if (n > 0 && cp >= 0xa0) {
            /* Printable non-ASCII text: as is. */
            if (fwrite(s + i, 1, n, out) != n)
                return -1;
            i += n;
            continue;
        }
        /* A control character (C0, DEL, or the bytes of a C1 control) or a
         * byte that is not valid UTF-8: show its bytes. */
        if (n == 0)
            n = 1;
        for (size_t k = 0; k < n; k++)
            if (fprintf(out, "\\x%02x", s[i + k]) < 0)
                return -1;
        i += n;
    }
    return 0;
}
