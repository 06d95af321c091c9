import Foundation
import XCTest

/// A shared library a server is started with (`LD_PRELOAD`) that acts at its Nth `open` of one
/// file, so a test can land another process's change exactly between two of the server's
/// steps: before that open, `rename` puts a file in the watched one's place (a new inode, as
/// a fleet node's `verify` re-downloads a cached copy); after it, `run` runs a shell command
/// (a re-pack and a collection, as compaction does between a client's requests).
struct OpenHook {
    /// The file whose opens are counted: any path ending in this name.
    var name: String
    /// Which open of it to act at (1: the first).
    var at: Int
    var rename: String?
    var run: String?

    static let source = #"""
    #define _GNU_SOURCE
    #include <dlfcn.h>
    #include <fcntl.h>
    #include <stdarg.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/types.h>

    static int seen = 0;

    static int watched(const char *path) {
        const char *name = getenv("OPEN_HOOK_NAME");
        size_t n = name ? strlen(name) : 0, p = path ? strlen(path) : 0;
        return n > 0 && p >= n && strcmp(path + p - n, name) == 0
            && __atomic_add_fetch(&seen, 1, __ATOMIC_SEQ_CST) == atoi(getenv("OPEN_HOOK_AT"));
    }

    static void before(void) {
        const char *from = getenv("OPEN_HOOK_RENAME"), *to = getenv("OPEN_HOOK_TARGET");
        if (from && to && rename(from, to) != 0) perror("open hook: rename");
    }

    static void after(void) {
        const char *command = getenv("OPEN_HOOK_RUN");
        if (command && system(command) != 0) fprintf(stderr, "open hook: %s failed\n", command);
    }

    #define HOOK(call) \
        int hit = watched(path); \
        if (hit) before(); \
        int fd = call; \
        if (hit) after(); \
        return fd;

    #define MODE mode_t mode = 0; \
        if (flags & (O_CREAT | __O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); }

    int open(const char *path, int flags, ...) {
        MODE static int (*real)(const char *, int, ...); if (!real) real = dlsym(RTLD_NEXT, "open");
        HOOK(real(path, flags, mode))
    }
    int open64(const char *path, int flags, ...) {
        MODE static int (*real)(const char *, int, ...); if (!real) real = dlsym(RTLD_NEXT, "open64");
        HOOK(real(path, flags, mode))
    }
    int openat(int dir, const char *path, int flags, ...) {
        MODE static int (*real)(int, const char *, int, ...); if (!real) real = dlsym(RTLD_NEXT, "openat");
        HOOK(real(dir, path, flags, mode))
    }
    int openat64(int dir, const char *path, int flags, ...) {
        MODE static int (*real)(int, const char *, int, ...); if (!real) real = dlsym(RTLD_NEXT, "openat64");
        HOOK(real(dir, path, flags, mode))
    }
    """#

    /// The environment that starts a process with the hook (the library built in `scratch`).
    /// `run`'s command runs without it.
    func environment(_ scratch: Scratch, target: String) throws -> [String: String] {
        let library = scratch.path + "/open-hook.so"
        if !FileManager.default.fileExists(atPath: library) {
            let c = try scratch.write("open-hook.c", Array(Self.source.utf8))
            let cc = Process()
            cc.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            cc.arguments = ["cc", "-shared", "-fPIC", "-O1", "-o", library, c, "-ldl"]
            try cc.run()
            cc.waitUntilExit()
            XCTAssertEqual(cc.terminationStatus, 0, "cc builds the open hook")
        }
        var env = ["LD_PRELOAD": library, "OPEN_HOOK_NAME": name, "OPEN_HOOK_AT": String(at), "OPEN_HOOK_TARGET": target]
        env["OPEN_HOOK_RENAME"] = rename
        env["OPEN_HOOK_RUN"] = run.map { "env -u LD_PRELOAD sh -c '\($0)'" }
        return env
    }
}
