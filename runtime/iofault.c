#include "runtime/iofault.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static _Atomic long fail_after = -1, n_calls;
static int werr = ENOSPC, rerr = EIO;

void sr_io_fail_after(long n, int write_errno, int read_errno)
{
    werr = write_errno;
    rerr = read_errno;
    atomic_store(&n_calls, 0);
    atomic_store(&fail_after, n);
}

long sr_io_count(void) { return atomic_load(&n_calls); }

int sr_io_fault(int is_write)
{
    long f = atomic_load(&fail_after);
    if (f < 0) return 0;
    if (atomic_fetch_add(&n_calls, 1) < f) return 0;
    errno = is_write ? werr : rerr;
    return -1;
}

int sr_fsync(int fd)
{
    const char *e = getenv("STRATA_UNSAFE_NO_FSYNC");
    if (e && !strcmp(e, "1")) return 0;
    return fsync(fd);
}
