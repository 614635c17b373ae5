/* memtrace.h: what every memtrace component shares with its users: the
 * software version, the error codes and their names. */
#ifndef MEMTRACE_MEMTRACE_H
#define MEMTRACE_MEMTRACE_H

#include <errno.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MT_BUILDING) && defined(__GNUC__)
#define MT_EXTERN __attribute__((visibility("default")))
#else
#define MT_EXTERN
#endif

#define MT_VERSION_STRING "0.1.0"

/* Errors are negative ints. errno values map to -(errno); memtrace's own
 * codes live in their own range, below -4000, so they never collide.
 * One table, three uses: the enum, mt_strerror() and mt_err_name(). */
#define MT_ERRNO_MAP(X)                                                        \
    X(NOMEM, -ENOMEM, "out of memory")                                         \
    X(INVAL, -EINVAL, "invalid argument")                                      \
    X(IO, -EIO, "input/output error")                                          \
    X(NOENT, -ENOENT, "no such file or directory")                             \
    X(EXIST, -EEXIST, "file exists")                                           \
    X(NOSPC, -ENOSPC, "no space left on device")                               \
    X(BADMAGIC, -4001, "not a memtrace capture (unknown magic)")               \
    X(VERSION, -4002, "unsupported capture format version")                    \
    X(TRUNCATED, -4003, "capture is truncated")                                \
    X(CORRUPT, -4004, "corrupt record")                                        \
    X(CHECKSUM, -4005, "checksum mismatch")                                    \
    X(TOOBIG, -4006, "size or count out of range")                             \
    X(LZ4, -4007, "lz4 decompression failed")                                  \
    X(RESERVED, -4008, "reserved bits are set")                                \
    X(UNSUPPORTED, -4009, "not supported by this capture")                   \
    X(RANGE, -ERANGE, "out of range")

typedef enum {
#define MT_ERR_ENUM_(name, value, text) MT_E##name = (value),
    MT_ERRNO_MAP(MT_ERR_ENUM_)
#undef MT_ERR_ENUM_
} mt_errno_t;

/* Returns a static, human-readable description of err (never NULL).
 * Unknown negative values fall back to strerror(-err). Thread-safe. */
MT_EXTERN const char *mt_strerror(int err);

/* Returns the symbolic name of err, e.g. "MT_ETRUNCATED" (static, never NULL). */
MT_EXTERN const char *mt_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif
