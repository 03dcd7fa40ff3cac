// extprog: an external program as a line filter (extprog.h).
#include "extprog.h"
#include "util.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void extprog_result_free(ExtResult *r) {
    for (int64_t i = 0; i < r->n; i++) free(r->lines[i]);
    free(r->lines);
    memset(r, 0, sizeof *r);
}

// Moves every complete line of buf[0..*blen) into r (the first `want` kept, the rest counted);
// the bytes after the last line end stay in buf.
static int take_lines(ExtResult *r, char *buf, size_t *blen, int64_t want, char *err,
                      size_t errlen) {
    size_t start = 0;
    char *nl;
    while ((nl = memchr(buf + start, '\n', *blen - start))) {
        size_t n = (size_t)(nl - (buf + start));
        int64_t line = r->n + r->extra + 1;
        if (memchr(buf + start, 0, n))
            return util_err(err, errlen, "answer line %lld holds a NUL byte: not a text line",
                            (long long)line);
        while (n > 0 && buf[start + n - 1] == '\r') n--;
        if (r->n < want) {
            r->lines = REALLOC_ARRAY(r->lines, (size_t)r->n + 1, sizeof(char *));
            char *s = MALLOC_CHECK(n + 1);
            memcpy(s, buf + start, n);
            s[n] = 0;
            r->lines[r->n++] = s;
        } else r->extra++;
        start += (size_t)(nl - (buf + start)) + 1;
    }
    memmove(buf, buf + start, *blen - start);
    *blen -= start;
    if (*blen > EXTPROG_MAX_LINE)
        return util_err(err, errlen, "answer line %lld is longer than %zu bytes",
                        (long long)(r->n + r->extra + 1), EXTPROG_MAX_LINE);
    return 0;
}

static pid_t start(const char *cmd, int *wfd, int *rfd, char *err, size_t errlen) {
    int in[2], out[2];
    if (pipe(in)) return util_err(err, errlen, "pipe: %s", strerror(errno));
    if (pipe(out)) {
        close(in[0]);
        close(in[1]);
        return util_err(err, errlen, "pipe: %s", strerror(errno));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        return util_err(err, errlen, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        setpgid(0, 0);   // its own group: a timeout ends what the shell started too
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);   // also here: whichever runs first
    close(in[0]);
    close(out[1]);
    *wfd = in[1];
    *rfd = out[0];
    for (int i = 0; i < 2; i++) {
        int fd = i ? *rfd : *wfd;
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);   // poll waits, with the timeout
    }
    return pid;
}

// Waits for pid to exit, up to timeout seconds (then SIGTERM to its process group, or at once
// when kill_now); its exit status, -1 when a signal ended it.
static int finish(pid_t pid, double timeout, int kill_now, int *timed_out) {
    int st = 0;
    pid_t got = 0;
    double t0 = util_time_s();
    while (!kill_now && (got = waitpid(pid, &st, WNOHANG)) == 0 && util_time_s() - t0 < timeout)
        usleep(10000);
    if (got == 0) {
        if (!kill_now) *timed_out = 1;
        kill(-pid, SIGTERM);   // the shell and what it started (its process group)
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int extprog_run(const char *cmd, const char *input, size_t len, int64_t want, double timeout,
                ExtResult *r, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    int wfd = -1, rfd = -1;
    pid_t pid = start(cmd, &wfd, &rfd, err, errlen);
    if (pid < 0) return -1;
    void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN);   // a program that exits: a write error
    size_t off = 0, blen = 0, bcap = 0;
    char *buf = NULL;
    if (len == 0) { close(wfd); wfd = -1; }
    double last = util_time_s();   // the last progress: bytes written or read
    int rc = 0;
    while (rfd >= 0 && !rc) {
        struct pollfd p[2] = {{.fd = rfd, .events = POLLIN}, {.fd = wfd, .events = POLLOUT}};
        int writing = wfd >= 0;
        double left = timeout - (util_time_s() - last);
        if (left <= 0) { r->timed_out = 1; break; }
        int k = poll(p, writing ? 2 : 1, left > 1.0 ? 1000 : (int)(left * 1000) + 1);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) { rc = util_err(err, errlen, "poll: %s", strerror(errno)); break; }
        if (writing && p[1].revents) {
            ssize_t w = write(wfd, input + off, len - off);
            if (w > 0) {
                off += (size_t)w;
                last = util_time_s();
            }
            // all written, or it closed its input (what it did not read gets no answer)
            if (off == len || (w < 0 && errno != EAGAIN && errno != EINTR)) {
                close(wfd);
                wfd = -1;
            }
        }
        if (p[0].revents) {
            if (bcap - blen < 65536) {
                bcap = bcap ? 2 * bcap : 131072;
                buf = REALLOC_CHECK(buf, bcap);
            }
            ssize_t n = read(rfd, buf + blen, bcap - blen);
            if (n > 0) {
                blen += (size_t)n;
                last = util_time_s();
                rc = take_lines(r, buf, &blen, want, err, errlen);
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                close(rfd);
                rfd = -1;
            }
        }
    }
    if (!rc && !r->timed_out && blen) {   // a last line without its line end
        buf = REALLOC_CHECK(buf, blen + 1);
        buf[blen++] = '\n';
        rc = take_lines(r, buf, &blen, want, err, errlen);
    }
    if (wfd >= 0) close(wfd);
    if (rfd >= 0) close(rfd);
    free(buf);
    r->status = finish(pid, timeout, rc || r->timed_out, &r->timed_out);
    signal(SIGPIPE, old_pipe);
    if (rc) extprog_result_free(r);
    return rc;
}
