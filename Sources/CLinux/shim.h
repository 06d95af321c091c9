#define _GNU_SOURCE
#include <fcntl.h>

/* Starts asynchronous writeback of a file range (Linux sync_file_range, which Glibc's
   Swift overlay does not expose without _GNU_SOURCE). */
static inline int kvstore_start_writeback(int fd, long long offset, long long length) {
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
}
