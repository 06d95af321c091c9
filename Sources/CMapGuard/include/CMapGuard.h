#ifndef CMAPGUARD_H
#define CMAPGUARD_H

#include <stddef.h>

/* Guards read-only file mappings against the file shrinking under them (docs/design/store.md,
   "An input written while it is read"). A read past the new end of a mapped file raises
   SIGBUS, which would kill the whole process (a daemon with every ingest in flight). Inside a
   guarded mapping the handler maps a page of zeros over the faulting page and marks the
   mapping: the read goes on, and the reader's checks (the file's identity, the checksums)
   refuse what it read. A fault anywhere else goes to the handler that was there before. */

/* Guards [start, start + length); returns a slot (>= 0), or -1 when every slot is taken
   (the mapping is then read unguarded). */
int kvstore_guard_mapping(const void *start, size_t length);

/* Whether a read in the slot's mapping faulted since it was guarded. */
int kvstore_guard_faulted(int slot);

/* Stops guarding the slot (before the mapping is unmapped). */
void kvstore_unguard_mapping(int slot);

#endif
