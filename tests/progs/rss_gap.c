/* rss_gap.c: memory whose place in the RSS gap is known, for the tests of
 * `memtrace rss` (tests/e2e/test_rss.py).
 *
 *   rss_gap none            nothing beyond start-up
 *   rss_gap file N PATH     writes an N MiB file at PATH, maps it and reads
 *                           every page: N MiB of file-backed RSS
 *   rss_gap raw N           maps N MiB with the raw mmap system call (no
 *                           libc wrapper, so no hook sees it) and writes
 *                           every page: N MiB of anonymous RSS not traced
 *   rss_gap heap N          malloc(N MiB), every page written: traced
 *   rss_gap spike N         the same, freed at once: in the peak RSS only,
 *                           between two samples (--rss-interval 60000)
 *
 * The memory stays until the process exits, so the tracer's last sample
 * (taken at exit) sees it. No stdio: the C library allocates nothing
 * behind the test's back. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MIB (1ul << 20)

static volatile unsigned long sink;

static void touch(volatile char *p, size_t len, int write)
{
    long page = sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < len; i += (size_t)page) {
        if (write)
            p[i] = 1;
        else
            sink += (unsigned char)p[i];
    }
}

static int file_map(size_t len, const char *path)
{
    static char chunk[1 << 16];
    memset(chunk, 'x', sizeof chunk);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return 1;
    for (size_t done = 0; done < len; done += sizeof chunk)
        if (write(fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk)
            return 1;
    char *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        return 1;
    close(fd);
    touch(p, len, 0);
    return 0;
}

static int raw_map(size_t len)
{
    long r = syscall(SYS_mmap, NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == -1)
        return 1;
    touch((char *)r, len, 1);
    return 0;
}

static int heap(size_t len, int keep)
{
    char *p = malloc(len);
    if (!p)
        return 1;
    touch(p, len, 1);
    sink += (unsigned long)p;
    if (!keep)
        free(p); /* a large block: munmap'ed, out of RSS at once */
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) * MIB : 0;
    if (strcmp(argv[1], "none") == 0)
        return 0;
    if (strcmp(argv[1], "file") == 0 && argc > 3)
        return file_map(n, argv[3]);
    if (strcmp(argv[1], "raw") == 0)
        return raw_map(n);
    if (strcmp(argv[1], "heap") == 0)
        return heap(n, 1);
    if (strcmp(argv[1], "spike") == 0)
        return heap(n, 0);
    return 2;
}
