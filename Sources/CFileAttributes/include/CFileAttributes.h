#ifndef CFILEATTRIBUTES_H
#define CFILEATTRIBUTES_H

/* Extended attributes of an open file (sys/xattr.h, which Glibc's Swift overlay does not
   expose; a C target of its own, so that no system header it pulls in reaches Swift). */

long kvstore_fgetxattr(int fd, const char *name, void *value, unsigned long size);
int kvstore_fsetxattr(int fd, const char *name, const void *value, unsigned long size);
int kvstore_fremovexattr(int fd, const char *name);

#endif
