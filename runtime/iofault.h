/* I/O fault injection for tests (hardening): the converter and other writers
 * call sr_io_fault() before each read or write of a file; after `n` more
 * successful calls it fails with the chosen errno (ENOSPC for writes, EIO for
 * reads), so a test can fail every I/O step of a conversion in turn and check
 * for a clean error and no partial output.  Off (the default) it costs one
 * atomic load. */
#ifndef SR_IOFAULT_H
#define SR_IOFAULT_H

/* n < 0 switches injection off. */
void sr_io_fail_after(long n, int write_errno, int read_errno);
long sr_io_count(void);
/* Returns 0, or -1 with errno set when this I/O step must fail.  `is_write`
 * selects the errno. */
int sr_io_fault(int is_write);

/* fsync(fd), unless STRATA_UNSAFE_NO_FSYNC=1 (tests that run thousands of
 * conversions; never for real output). */
int sr_fsync(int fd);

#endif
