#include "CFileAttributes.h"

#include <sys/xattr.h>

long kvstore_fgetxattr(int fd, const char *name, void *value, unsigned long size) {
    return (long)fgetxattr(fd, name, value, size);
}

int kvstore_fsetxattr(int fd, const char *name, const void *value, unsigned long size) {
    return fsetxattr(fd, name, value, size, 0);
}

int kvstore_fremovexattr(int fd, const char *name) {
    return fremovexattr(fd, name);
}
