#include <sqlite3.h>

/* A connection whose index file was replaced or removed must never checkpoint or delete the
   WAL by name when it closes: the name may now be another database's (the fence in
   Database.swift). sqlite3_db_config is variadic, which Swift cannot call. */
static inline int kvstore_sqlite_no_checkpoint_on_close(sqlite3 *db) {
    return sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)0);
}
