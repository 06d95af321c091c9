import Dispatch
import Foundation
import LightKV
import Logging
import Store

/// How the daemon runs.
public struct WatchSettings: Sendable {
    public var policy: Policy
    /// Files ingested at once (each on its own worker thread with its own index connection).
    public var jobs: Int = 1
    /// Seconds a file's size and mtime must stay unchanged before a scan may claim it.
    public var settle: Double = 1.0
    /// Seconds between inbox scans.
    public var interval: Double = 0.25
    /// Poll instead of using inotify.
    public var forcePolling = false
    /// Ingest what is in the inbox (and abandoned work folders), then exit.
    public var once = false
    /// Longest wait before retrying an input that failed with a transient error.
    public var maxBackoff: Double = 60

    /// The values each setting may take: a poll or wait the system can time (NaN, an infinity
    /// or 1e10 seconds trapped its conversions or spun on a zero timeout).
    public static let settleRange: ClosedRange<Double> = 0...86_400
    public static let intervalRange: ClosedRange<Double> = 0.001...3_600
    public static let maxBackoffRange: ClosedRange<Double> = 0...86_400

    public init(policy: Policy) { self.policy = policy }
}

/// What a daemon run did.
public struct WatchSummary: Sendable, Codable {
    public var ingested = 0
    public var alreadyStored = 0
    public var failed = 0
    public var retried = 0
    public var adopted = 0
    public var bytesIn = 0
    public var bytesOut = 0
}

/// The inbox daemon: watches an inbox, claims complete files, ingests them on `jobs`
/// workers, and moves each input to done/ (or deletes it) or to failed/.
///
/// States (docs/DESIGN.md ("The inbox daemon and compaction")): `starting` (open store, lock a work folder) →
/// `recovering` (adopt work folders of dead daemons and ingest their files) → `running`
/// (scan, claim, ingest) → `draining` (after `stop()`: claim nothing more, let in-flight
/// ingests finish) → `stopped`. Nothing is rolled back on a graceful stop because nothing
/// in flight is abandoned; after a crash, the next start's recovery picks up what was
/// claimed, and re-ingesting is harmless because an entry's id is its content.
public final class InboxDaemon: @unchecked Sendable {
    public enum State: String, Sendable { case starting, recovering, running, draining, stopped }

    /// The store, for logs.
    public let storeName: String
    /// Opens a handle on the store (one per worker).
    private let openStore: @Sendable () throws -> StoreRoot
    public let layout: InboxLayout
    public let settings: WatchSettings
    private let logger: Logger
    private let queue = InboxQueue()
    private let lock = NSLock()
    private var _state = State.starting
    private var summary = WatchSummary()
    /// Earliest time an input that failed transiently may be claimed again, and its attempts.
    private var backoff: [String: (notBefore: Double, attempts: Int)] = [:]
    /// Why the daemon stopped itself, if it did.
    private var fatal: Error?

    /// A daemon for the store `openStore` opens (any backend); `storeName` names it in logs.
    public init(storeName: String, openStore: @escaping @Sendable () throws -> StoreRoot, layout: InboxLayout,
                settings: WatchSettings, logger: Logger) {
        self.storeName = storeName
        self.openStore = openStore
        self.layout = layout
        self.settings = settings
        self.logger = logger
    }

    /// A daemon for the local store at `storePath`.
    public convenience init(storePath: String, layout: InboxLayout, settings: WatchSettings, logger: Logger) {
        self.init(storeName: storePath, openStore: { try StoreRoot(path: storePath) }, layout: layout, settings: settings, logger: logger)
    }

    public var state: State {
        lock.lock(); defer { lock.unlock() }
        return _state
    }

    private func set(_ state: State) {
        lock.lock(); _state = state; lock.unlock()
        logger.debug("state", metadata: ["state": "\(state.rawValue)"])
    }

    /// Asks the daemon to stop: no new claims; in-flight files finish. Safe from any thread.
    public func stop() {
        lock.lock()
        let running = _state != .stopped
        if running { _state = .draining }
        lock.unlock()
        if running { logger.info("stopping: finishing files in flight") }
    }

    /// Age past which a temporary file no one writes is a killed ingest's, removed at start.
    public static let staleTemporarySeconds: Double = 3600

    /// Daemons that may stop while ingesting one file before it is set aside in failed/.
    public static let abandonmentLimit = 5

    /// Whether a failure is the store's (or the machine's), not the input's (at any of the
    /// paths in `input`: where it was claimed, and the descriptor path it is read by): the index
    /// refused, or a file outside the input could not be written or read (a read-only or
    /// failing store disk, its permissions, no file descriptors or memory). Such inputs go
    /// back to the inbox and are tried again, never to failed/ (a read-only store once sent
    /// every valid input there).
    public static func isTheStores(_ error: StoreError, input: [String?]) -> Bool {
        switch error {
        case .database: return true
        case .io(let path, _, let code):
            return !input.contains(path) && [EROFS, EACCES, EPERM, EIO, EMFILE, ENFILE, ENOMEM].contains(code)
        default: return false
        }
    }

    /// Whether a stored entry's policy keeps every entry and number as given (no reduction,
    /// no quantization; any codec).
    public static func isExact(_ policy: String) -> Bool {
        guard let p = try? Policy(parsing: policy) else { return false }
        return p.reduction == .none && p.quantization == .none
    }

    private var stopping: Bool { let s = state; return s == .draining || s == .stopped }

    /// Runs until `stop()` (or, with `once`, until the inbox is empty). Returns what it did;
    /// throws `InboxError` when a folder of the inbox is a symbolic link (at start) or stops
    /// being the folder opened at start (while running: the daemon stops and exits).
    public func run() throws -> WatchSummary {
        // Open the store first, so a bad store fails before any folder is made or claimed.
        let root = try openStore()
        try layout.checkPlaces(store: root)
        // A killed ingest's temporary pack stays in this node's tmp/ (on a shared store, its
        // cache) until a compaction runs here, which on a fleet may be never: the same rule
        // as compaction's (older than an hour, open for writing by no one) clears it now.
        let stale = root.staleTemporaryFiles(minimumAge: Self.staleTemporarySeconds)
        for file in stale { try? FileSystem.remove(file.path) }
        if !stale.isEmpty {
            logger.info("removed stale temporary files", metadata: .fields(["files": "\(stale.count)",
                                                                            "bytes": "\(stale.reduce(0) { $0 + $1.bytes })"]))
        }
        let folders = try InboxFolders(layout: layout)
        let claim = try InboxClaim(folders: folders)
        let disposal = InputDisposal(folders: folders)
        let watcher = InboxWatcher(inbox: folders.inbox, settle: settings.settle, interval: settings.interval,
                                   forcePolling: settings.forcePolling)
        logger.info("watching", metadata: .fields([
            "inbox": layout.inbox, "store": storeName, "policy": settings.policy.name,
            "jobs": "\(settings.jobs)", "mode": watcher.mode.rawValue, "work": claim.folder.path,
            "done": layout.done ?? "(delete)",
        ]))

        let workers = try (0..<max(1, settings.jobs)).map { _ in
            Worker(daemon: self, root: try openStore(), claim: claim, disposal: disposal)
        }
        let group = DispatchGroup()
        for worker in workers {
            let thread = Thread { worker.loop(); group.leave() }
            group.enter()
            thread.stackSize = 4 << 20
            thread.start()
        }

        if !stopping { set(.recovering) }
        let adopted = claim.adoptAbandoned()
        for a in adopted {
            if !a.files.isEmpty {
                logger.info("recovering abandoned work folder", metadata: .fields(["folder": a.folder.path, "files": "\(a.files.count)"]))
            }
            for f in a.files {
                let stops = claim.unfinishedIngests(f, in: a.folder)
                guard stops >= Self.abandonmentLimit else { queue.push(.claimed(a.folder, f)); continue }
                let message = "\(stops) daemons stopped (a crash, or kill -9) while ingesting this file: set aside so that the "
                    + "rest of the inbox is ingested; move it back to the inbox to try it again"
                let report = IngestFailureReport(file: f, stage: .read, message: message, policy: settings.policy.name)
                do {
                    let to = try disposal.fail(f, in: a.folder, report: report)
                    record { $0.failed += 1 }
                    logger.error("failed", metadata: .fields(["file": f, "error": message, "input": to]))
                } catch {
                    queue.push(.claimed(a.folder, f))
                }
            }
        }
        if !stopping { set(.running) }

        while !stopping {
            let now = Date().timeIntervalSince1970
            let waiting = Set(backoffNames(before: now))
            let busy = queue.busyNames
            for name in watcher.ready(excluding: busy.union(waiting)) { queue.push(.inbox(name)) }
            for (from, to) in watcher.renamed {
                logger.warning("renamed an input whose name is not UTF-8", metadata: .fields(["file": from, "renamed_to": to]))
            }
            if settings.once && queue.isIdle && watcher.candidates().allSatisfy({ waiting.contains($0.name) }) { break }
            // Notice a replaced folder at once, not only when an input is next moved there.
            do { try folders.checkInPlace() } catch { abort(error) }
            watcher.wait()
        }
        set(.draining)
        queue.close()
        group.wait()
        // Emptied adopted folders go; any left (shutdown came first) stay for the next start.
        for a in adopted { claim.release(a) }
        for name in claim.ownFiles { _ = try? claim.unclaim(name, from: claim.folder) }
        claim.releaseOwn()
        set(.stopped)
        lock.lock(); let s = summary; let fatal = fatal; lock.unlock()
        logger.info("stopped", metadata: .fields(["ingested": "\(s.ingested)", "already_stored": "\(s.alreadyStored)",
                                                  "failed": "\(s.failed)", "retried": "\(s.retried)"]))
        if let fatal { throw fatal }
        return s
    }

    /// Stops the daemon because it must not go on (a folder of the inbox was replaced); `run`
    /// throws `error` once the files in flight are finished.
    fileprivate func abort(_ error: Error) {
        lock.lock()
        let first = fatal == nil
        if first { fatal = error }
        lock.unlock()
        if first { logger.critical("refusing to go on", metadata: .fields(["error": "\(error)"])) }
        stop()
    }

    private func backoffNames(before now: Double) -> [String] {
        lock.lock(); defer { lock.unlock() }
        return backoff.filter { $0.value.notBefore > now }.map(\.key)
    }

    /// Seconds to wait before attempt `n + 1`: 1, 2, 4, … up to `maxBackoff`.
    static func backoffDelay(attempts: Int, max: Double) -> Double {
        min(max, pow(2, Double(min(attempts, 30) - 1)))
    }

    fileprivate func record(_ update: (inout WatchSummary) -> Void) {
        lock.lock(); update(&summary); lock.unlock()
    }

    fileprivate func postpone(_ name: String) -> Double {
        lock.lock(); defer { lock.unlock() }
        let attempts = (backoff[name]?.attempts ?? 0) + 1
        let delay = Self.backoffDelay(attempts: attempts, max: settings.maxBackoff)
        backoff[name] = (Date().timeIntervalSince1970 + delay, attempts)
        return delay
    }

    fileprivate func clearBackoff(_ name: String) {
        lock.lock(); backoff[name] = nil; lock.unlock()
    }

    /// One worker thread: its own index connection (SQLite connections are not shared
    /// between threads), ingesting one file at a time.
    private final class Worker: @unchecked Sendable {
        let daemon: InboxDaemon
        var ingestor: Ingestor
        let claim: InboxClaim
        let disposal: InputDisposal

        init(daemon: InboxDaemon, root: StoreRoot, claim: InboxClaim, disposal: InputDisposal) {
            self.daemon = daemon
            var ingestor = Ingestor(root: root)
            // Workers already run side by side; fewer layers each keeps memory bounded.
            ingestor.inFlight = daemon.settings.jobs > 1 ? 2 : 3
            self.ingestor = ingestor
            self.claim = claim
            self.disposal = disposal
        }

        func loop() {
            while let item = daemon.queue.pop() {
                defer { daemon.queue.finish(item) }
                switch item {
                case .inbox(let name):
                    do {
                        guard let claimed = try claim.claim(name) else { continue }
                        // Complete when queued, but a backlog may have kept it waiting: a writer
                        // that opened it since gets it back untried, and it waits out a backoff.
                        if isBeingWritten(claimed, in: claim.folder) {
                            _ = daemon.postpone(name)
                            _ = try? claim.unclaim(claimed, from: claim.folder)
                            daemon.logger.info("claimed while being written; back to the inbox", metadata: .fields(["file": name]))
                            continue
                        }
                        process(claimed, in: claim.folder, name: name)
                    } catch {
                        daemon.logger.error("claim failed", metadata: .fields(["file": name, "error": "\(error)"]))
                    }
                case .claimed(let folder, let name):
                    daemon.record { $0.adopted += 1 }
                    process(name, in: folder, name: name)
                }
            }
        }

        /// Ingests the claimed file `claimed` in `folder` (inbox name `name`) and disposes of it.
        func process(_ claimed: String, in folder: InboxFolder, name: String) {
            let log = daemon.logger
            let policy = daemon.settings.policy
            var stage = IngestStage.read
            var input: ClaimedInput?
            // Name the input where the user put it, not by its path in the work folder.
            func described(_ error: Error) -> String {
                var message = "\(error)"
                for path in [input?.path, folder.path + "/" + claimed].compactMap({ $0 }) {
                    message = message.replacingOccurrences(of: path, with: daemon.layout.inbox + "/" + name)
                }
                return message
            }
            do {
                let opened = try ClaimedInput(claimed, in: folder)
                input = opened
                claim.noteIngestStart(claimed, in: folder)
                let outcome = try ingestor.ingest(path: opened.path, policy: policy, stage: &stage)
                let r = outcome.record
                // Stored before under a lossier policy than this daemon's: the input may be the
                // only exact copy. Never deleted for it: kept in failed/ with a report that says
                // so (in done/ it is kept anyway).
                if outcome.alreadyStored, r.policy != policy.name, !InboxDaemon.isExact(r.policy) {
                    let note = "already stored as \(r.id) under policy \(r.policy), lossier than this daemon's \(policy.name); "
                        + "the input is kept (to store it as \(policy.name): kvstore rm \(r.id.prefix(12)), then ingest it again)"
                    log.warning("already stored under a lossier policy", metadata: .fields(["file": name, "id": r.id, "stored_policy": r.policy,
                                                                                          "policy": policy.name]))
                    if daemon.layout.done == nil {
                        let report = IngestFailureReport(file: name, stage: .index, message: note, policy: policy.name)
                        let to = try disposal.fail(claimed, in: folder, report: report)
                        daemon.clearBackoff(name)
                        daemon.record { $0.alreadyStored += 1 }
                        log.info("kept", metadata: .fields(["file": name, "id": r.id, "input": to]))
                        return
                    }
                }
                let movedTo: String?
                do { movedTo = try disposal.finish(claimed, in: folder) } catch {
                    // Stored, but the input could not be moved on (permissions, …): never
                    // failed/ for a stored input. It goes back to the inbox and, found
                    // already stored next time, is moved on then.
                    returnToInbox(claimed, in: folder, name: name, after: error, described: "\(error)",
                                  message: "stored, but the input could not be moved on; will retry",
                                  fields: ["id": r.id])
                    return
                }
                daemon.clearBackoff(name)
                daemon.record {
                    if outcome.alreadyStored { $0.alreadyStored += 1 } else { $0.ingested += 1 }
                    $0.bytesIn += r.bytesIn
                    $0.bytesOut += outcome.alreadyStored ? 0 : r.bytesOut
                }
                log.info(outcome.alreadyStored ? "already stored" : "ingested", metadata: .fields([
                    "file": name, "id": r.id, "bytes_in": "\(r.bytesIn)", "bytes_out": "\(r.bytesOut)",
                    "ratio": String(format: "%.3f", r.ratio), "ms": String(format: "%.1f", outcome.milliseconds),
                    "policy": r.policy, "input": movedTo ?? "deleted",
                    // Progress of a batch: files still waiting behind this one.
                    "queued": "\(daemon.queue.waitingCount)",
                ]))
            } catch ClaimedInput.Missing.missing {
                log.warning("claimed input vanished from the work folder", metadata: .fields(["file": name, "folder": folder.path]))
            } catch let error as StoreError where error.isTransient
                        || InboxDaemon.isTheStores(error, input: [input?.path, folder.path + "/" + claimed]) {
                // Disk full, database busy: the input goes back to the inbox untouched and is
                // tried again after a growing delay. An index file replaced under the daemon
                // (a repair, a restore) is reopened first: its rows must go to the new one.
                if error.isIndexReplaced { reopenStore() }
                daemon.record { $0.retried += 1 }
                let message = described(error)
                returnToInbox(claimed, in: folder, name: name, after: error, described: message, message: "transient failure, will retry",
                              fields: ["stage": stage.rawValue])
            } catch {
                let message = described(error)
                let report = IngestFailureReport(file: name, stage: stage, message: message, policy: policy.name)
                do {
                    let to = try disposal.fail(claimed, in: folder, report: report)
                    daemon.clearBackoff(name)
                    daemon.record { $0.failed += 1 }
                    log.error("failed", metadata: .fields(["file": name, "stage": stage.rawValue, "error": message, "input": to]))
                } catch let moveError {
                    // The report could not be written or the input not moved (disk full, …):
                    // back to the inbox, to fail again, and be reported, on a later try.
                    returnToInbox(claimed, in: folder, name: name, after: moveError, described: "\(moveError)",
                                  message: "failed, and could not move the input to failed/; will retry",
                                  fields: ["stage": stage.rawValue, "ingest_error": message])
                }
            }
        }

        /// Opens the store again, for an index file replaced or removed since it was opened.
        private func reopenStore() {
            do {
                let root = try daemon.openStore()
                let inFlight = ingestor.inFlight
                ingestor = Ingestor(root: root)
                ingestor.inFlight = inFlight
                daemon.logger.warning("the index file was replaced or removed; reopened the store", metadata: .fields(["index": root.path]))
            } catch {
                daemon.logger.error("the index file was replaced or removed, and reopening the store failed; will retry", metadata: .fields(["error": "\(error)"]))
            }
        }

        /// The write-lease probe on a claimed file (false where it cannot tell).
        private func isBeingWritten(_ name: String, in folder: InboxFolder) -> Bool {
            let fd = folder.openEntry(name, O_RDONLY | O_NONBLOCK)
            guard fd >= 0 else { return false }
            defer { close(fd) }
            return WriteProbe.isOpenForWriting(fd: fd) == true
        }

        /// Puts a claimed input back into the inbox to be tried again after a growing delay,
        /// and logs why; a displaced inbox folder stops the daemon instead of a retry.
        private func returnToInbox(_ claimed: String, in folder: InboxFolder, name: String, after error: Error,
                                   described: String, message: String, fields: KeyValuePairs<String, String>) {
            if let e = error as? InboxError, case .displaced = e { daemon.abort(e) }
            let delay = daemon.postpone(name)
            var metadata: Logger.Metadata = .fields(["file": name, "error": described, "retry_in_s": String(format: "%.0f", delay)])
            metadata.merge(.fields(fields)) { $1 }
            claim.clearIngestStarts(claimed, in: folder)
            do { try claim.unclaim(claimed, from: folder) } catch {
                metadata.merge(.fields(["unclaim_error": "\(error)"])) { $1 }
            }
            daemon.logger.warning("\(message)", metadata: metadata)
        }
    }
}
