/* spawner.c: starts copies of itself the ways native programs start
 * children, for the --follow-fork tests (tests/e2e/test_workers.py).
 *
 *   spawner MODE   starts 2 children with MODE (posix_spawn, posix_spawnp,
 *                  vfork, fork-exec, execl), waits for them, and prints
 *                  their pids, one per line, in the order of their tasks;
 *                  or runs them through the shell with system or popen
 *                  (their pids are not known: it prints nothing)
 *   spawner child I    malloc(1000000 + I) in child_alloc, kept to the end
 *
 * fork-exec forks, allocates in the forked copy, then execs: the copy's
 * capture must give way to the program it became. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

extern char **environ;
static void *volatile keep;

NOINLINE static void child_alloc(int i)
{
    keep = malloc(1000000 + (size_t)i);
    memset(keep, 1, 16);
}

NOINLINE static void before_exec(void)
{
    keep = malloc(777777); /* in the forked copy, which then execs */
}

static pid_t start(const char *mode, const char *self, int i)
{
    char arg[16];
    snprintf(arg, sizeof arg, "%d", i);
    char *argv[] = {(char *)"spawner", (char *)"child", arg, NULL};
    pid_t pid = -1;
    if (strcmp(mode, "posix_spawn") == 0) {
        if (posix_spawn(&pid, self, NULL, NULL, argv, environ) != 0)
            return -1;
    } else if (strcmp(mode, "posix_spawnp") == 0) {
        /* with an environment of the program's own making */
        char *env[] = {(char *)"SPAWNER=1", NULL};
        if (posix_spawnp(&pid, self, NULL, NULL, argv, env) != 0)
            return -1;
    } else if (strcmp(mode, "vfork") == 0) {
        pid = vfork();
        if (pid == 0) {
            execv(self, argv);
            _exit(127);
        }
    } else if (strcmp(mode, "fork-exec") == 0) {
        pid = fork();
        if (pid == 0) {
            before_exec();
            execve(self, argv, environ);
            _exit(127);
        }
    } else if (strcmp(mode, "execl") == 0) {
        pid = fork();
        if (pid == 0) {
            execl(self, "spawner", "child", arg, (char *)NULL);
            _exit(127);
        }
    }
    return pid;
}

/* system / popen: "SELF child I" through the shell; 0 when it ran. */
static int through_shell(const char *mode, const char *self, int i)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "'%s' child %d", self, i);
    if (strcmp(mode, "system") == 0)
        return system(cmd) == 0 ? 0 : -1;
    FILE *f = popen(cmd, "r");
    return f && pclose(f) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "child") == 0) {
        child_alloc(atoi(argv[2]));
        return 0;
    }
    if (argc != 2)
        return 2;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return 2;
    self[n] = 0;
    if (strcmp(argv[1], "system") == 0 || strcmp(argv[1], "popen") == 0) {
        for (int i = 0; i < 2; i++)
            if (through_shell(argv[1], self, i) != 0)
                return 4;
        return 0;
    }
    pid_t pids[2];
    for (int i = 0; i < 2; i++)
        if ((pids[i] = start(argv[1], self, i)) <= 0)
            return 3;
    int failed = 0;
    for (int i = 0; i < 2; i++) {
        int status;
        if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0)
            failed = 1;
    }
    for (int i = 0; i < 2; i++)
        printf("%d\n", (int)pids[i]);
    return failed ? 4 : 0;
}
