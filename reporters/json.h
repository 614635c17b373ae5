/* json.h: a small streaming JSON writer, private to the reporters. The
 * writer places commas, colons and indentation itself; the caller only says
 * what comes next. Strings are always emitted as valid JSON: quotes,
 * backslashes and control characters are escaped, and bytes that are not
 * valid UTF-8 become U+FFFD, whatever the profiled program named things. */
#ifndef MT_REPORTERS_JSON_H
#define MT_REPORTERS_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MT_JSON_MAX_DEPTH 64

typedef struct mt_json_s {
    FILE *out;
    int depth;          /* open containers */
    int error;          /* sticky: misuse or a write error */
    int pretty;         /* newlines and two-space indentation */
    int html_safe;      /* also escape < > & U+2028 U+2029 (for <script>) */
    int after_key;      /* a key was written; its value comes next */
    unsigned char count[MT_JSON_MAX_DEPTH];   /* elements so far (saturates) */
    unsigned char compact[MT_JSON_MAX_DEPTH]; /* container kept on one line */
    unsigned char is_object[MT_JSON_MAX_DEPTH];
} mt_json_t;

/* Starts a document on out. pretty: indent nested containers. */
void mt__json_init(mt_json_t *j, FILE *out, int pretty);

/* Containers. The _compact variants keep the container on one line even in
 * pretty mode (for small objects such as frames). */
void mt__json_begin_object(mt_json_t *j);
void mt__json_begin_object_compact(mt_json_t *j);
void mt__json_end_object(mt_json_t *j);
void mt__json_begin_array(mt_json_t *j);
void mt__json_begin_array_compact(mt_json_t *j);
void mt__json_end_array(mt_json_t *j);

/* A key inside an object; the next call writes its value. */
void mt__json_key(mt_json_t *j, const char *key);

/* Values. NULL strings are written as null. Non-finite doubles are written
 * as null (JSON has no NaN); finite ones always with a '.' or an exponent
 * so that parsers read them as floats. */
void mt__json_string(mt_json_t *j, const char *s);
void mt__json_string_n(mt_json_t *j, const char *s, size_t len);
void mt__json_uint(mt_json_t *j, uint64_t v);
void mt__json_int(mt_json_t *j, int64_t v);
void mt__json_double(mt_json_t *j, double v);
void mt__json_bool(mt_json_t *j, int v);
void mt__json_null(mt_json_t *j);

/* Writes the escaped body of a JSON string (without the quotes) to out.
 * Returns 0 or -1 on a write error. */
int mt__json_escape(FILE *out, const char *s, size_t len, int html_safe);

/* Ends the document (a final newline). Returns 0, or -1 when the document
 * was not balanced, was nested too deep, or a write failed. */
int mt__json_finish(mt_json_t *j);

/* Decodes one UTF-8 sequence at s[0, len). Returns its length (1-4) and the
 * code point in *cp, or 0 when s does not start with a valid, shortest-form
 * sequence of a scalar value (no surrogates, at most U+10FFFF). */
size_t mt__utf8_decode(const unsigned char *s, size_t len, uint32_t *cp);

#endif
