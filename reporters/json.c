/* json.c: the streaming JSON writer of json.h. Every string goes through
 * one escaper that validates UTF-8, so a report stays parseable whatever
 * bytes a profiled program used in its function or file names. */
#include "json.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

size_t mt__utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
    if (len == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v, min;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, v = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, v = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0; /* continuation byte, overlong lead (c0, c1) or > f4 */
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

int mt__json_escape(FILE *out, const char *str, size_t len, int html_safe)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        /* Copy the longest run that needs no escaping in one call. */
        size_t run = i;
        while (run < len && s[run] >= 0x20 && s[run] < 0x7f &&
               s[run] != '"' && s[run] != '\\' &&
               !(html_safe && (s[run] == '<' || s[run] == '>' ||
                               s[run] == '&')))
            run++;
        if (run > i && fwrite(s + i, 1, run - i, out) != run - i)
            return -1;
        i = run;
        if (i >= len)
            break;
        unsigned c = s[i];
        int rc;
        if (c == '"') {
            rc = fputs("\\\"", out);
        } else if (c == '\\') {
            rc = fputs("\\\\", out);
        } else if (c == '\n') {
            rc = fputs("\\n", out);
        } else if (c == '\t') {
            rc = fputs("\\t", out);
        } else if (c == '\r') {
            rc = fputs("\\r", out);
        } else if (c < 0x80) {
            /* Other C0 controls, DEL, and the HTML-sensitive < > &. */
            rc = fprintf(out, "\\u%04x", c);
        } else {
            uint32_t cp;
            size_t n = mt__utf8_decode(s + i, len - i, &cp);
            if (n == 0) {
                rc = fputs("\\ufffd", out); /* one per invalid byte */
                n = 1;
            } else if (html_safe && (cp == 0x2028 || cp == 0x2029)) {
                rc = fprintf(out, "\\u%04" PRIx32, cp);
            } else if (cp < 0xa0) {
                rc = fprintf(out, "\\u%04" PRIx32, cp); /* C1 controls */
            } else {
                rc = fwrite(s + i, 1, n, out) == n ? 0 : EOF;
            }
            i += n;
            if (rc < 0)
                return -1;
            continue;
        }
        if (rc < 0)
            return -1;
        i++;
    }
    return 0;
}

void mt__json_init(mt_json_t *j, FILE *out, int pretty)
{
    memset(j, 0, sizeof *j);
    j->out = out;
    j->pretty = pretty;
}

static void json_newline(mt_json_t *j, int depth)
{
    fputc('\n', j->out);
    for (int i = 0; i < depth; i++)
        fputs("  ", j->out);
}

/* Writes what must come before a value: a comma after a previous element,
 * and in pretty mode a newline and indentation. Keys count as the element;
 * the value after a key gets nothing. */
static void json_before_value(mt_json_t *j, int is_key)
{
    if (j->error)
        return;
    if (j->after_key) {
        if (is_key)
            j->error = 1; /* two keys in a row */
        j->after_key = 0;
        return;
    }
    if (j->depth == 0) {
        if (j->count[0] || is_key)
            j->error = 1; /* one value per document, and no bare keys */
        j->count[0] = 1;
        return;
    }
    int d = j->depth;
    if (j->is_object[d] != is_key) {
        j->error = 1; /* object members need keys; arrays take none */
        return;
    }
    if (j->count[d])
        fputc(',', j->out);
    if (j->compact[d]) {
        if (j->count[d])
            fputc(' ', j->out);
    } else if (j->pretty) {
        json_newline(j, d);
    }
    if (j->count[d] < 255)
        j->count[d]++;
}

static void json_open(mt_json_t *j, char c, int is_object, int compact)
{
    json_before_value(j, 0);
    if (j->error)
        return;
    if (j->depth + 1 >= MT_JSON_MAX_DEPTH) {
        j->error = 1;
        return;
    }
    /* Inside a compact container everything stays on one line. */
    int parent_compact = j->depth > 0 && j->compact[j->depth];
    j->depth++;
    j->count[j->depth] = 0;
    j->compact[j->depth] = (unsigned char)(compact || parent_compact);
    j->is_object[j->depth] = (unsigned char)is_object;
    fputc(c, j->out);
}

static void json_close(mt_json_t *j, char c, int is_object)
{
    if (j->error)
        return;
    if (j->depth == 0 || j->after_key || j->is_object[j->depth] != is_object) {
        j->error = 1;
        return;
    }
    if (j->pretty && !j->compact[j->depth] && j->count[j->depth])
        json_newline(j, j->depth - 1);
    fputc(c, j->out);
    j->depth--;
}

void mt__json_begin_object(mt_json_t *j) { json_open(j, '{', 1, 0); }
void mt__json_begin_object_compact(mt_json_t *j) { json_open(j, '{', 1, 1); }
void mt__json_end_object(mt_json_t *j) { json_close(j, '}', 1); }
void mt__json_begin_array(mt_json_t *j) { json_open(j, '[', 0, 0); }
void mt__json_begin_array_compact(mt_json_t *j) { json_open(j, '[', 0, 1); }
void mt__json_end_array(mt_json_t *j) { json_close(j, ']', 0); }

static void json_quoted(mt_json_t *j, const char *s, size_t len)
{
    fputc('"', j->out);
    if (mt__json_escape(j->out, s, len, j->html_safe) < 0)
        j->error = 1;
    fputc('"', j->out);
}

void mt__json_key(mt_json_t *j, const char *key)
{
    json_before_value(j, 1);
    if (j->error)
        return;
    json_quoted(j, key, strlen(key));
    fputs(j->pretty || j->compact[j->depth] ? ": " : ":", j->out);
    j->after_key = 1;
}

void mt__json_string_n(mt_json_t *j, const char *s, size_t len)
{
    json_before_value(j, 0);
    if (!j->error)
        json_quoted(j, s, len);
}

void mt__json_string(mt_json_t *j, const char *s)
{
    if (!s) {
        mt__json_null(j);
        return;
    }
    mt__json_string_n(j, s, strlen(s));
}

void mt__json_uint(mt_json_t *j, uint64_t v)
{
    json_before_value(j, 0);
    if (!j->error)
        fprintf(j->out, "%" PRIu64, v);
}

void mt__json_int(mt_json_t *j, int64_t v)
{
    json_before_value(j, 0);
    if (!j->error)
        fprintf(j->out, "%" PRId64, v);
}

void mt__json_double(mt_json_t *j, double v)
{
    if (!isfinite(v)) {
        mt__json_null(j);
        return;
    }
    json_before_value(j, 0);
    if (j->error)
        return;
    char buf[64];
    snprintf(buf, sizeof buf, "%.15g", v);
    /* %g may print "2" or, in a locale with a decimal comma, "2,5": make it
     * a JSON float either way. */
    char *comma = strchr(buf, ',');
    if (comma)
        *comma = '.';
    if (!strpbrk(buf, ".eE"))
        strcat(buf, ".0");
    fputs(buf, j->out);
}

void mt__json_bool(mt_json_t *j, int v)
{
    json_before_value(j, 0);
    if (!j->error)
        fputs(v ? "true" : "false", j->out);
}

void mt__json_null(mt_json_t *j)
{
    json_before_value(j, 0);
    if (!j->error)
        fputs("null", j->out);
}

int mt__json_finish(mt_json_t *j)
{
    if (j->depth != 0 || j->after_key || !j->count[0])
        j->error = 1;
    if (!j->error)
        fputc('\n', j->out);
    if (ferror(j->out))
        j->error = 1;
    return j->error ? -1 : 0;
}
