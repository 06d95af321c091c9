import ArgumentParser
import CLinux
import Foundation
import LightKV
import Pipeline
import SharedStore
import Store

/// The `kvstore` command: keeps the KV caches of vision-language models small and ready for reuse.
struct KVStoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvstore",
        abstract: "Compress, store and serve back the KV caches of vision-language models.",
        discussion: """
        Exit codes: 0 ok, 1 usage error, 2 not found, 3 invalid or corrupt data, 4 transient failure (retry).
        The store is named by --store-config FILE, else --store, else $KVSTORE_CONFIG, else $KVSTORE_HOME, else ~/.kvstore.
        """,
        version: KVStoreVersion.current,
        subcommands: [
            IngestCommand.self, FetchCommand.self, ListCommand.self, ShowCommand.self, RemoveCommand.self,
            PinCommand.self, RepackCommand.self, VerifyCommand.self, RepairCommand.self, StatsCommand.self, PoliciesCommand.self,
            MatchCommand.self,
        ] + ExtraCommands.all)
}

/// Exit codes documented in the README.
enum Exit {
    static let usage: Int32 = 1
    static let notFound: Int32 = 2
    static let invalid: Int32 = 3
    static let transient: Int32 = 4

    /// The exit code of an error kvstore itself raised; nil for argument-parsing errors.
    static func domainCode(for error: Error) -> Int32? {
        switch error {
        case let e as StoreError:
            switch e {
            case .notFound, .ambiguous: return notFound
            case .corrupt, .invalidSnapshot: return invalid
            case .badPolicy: return usage
            case .io, .database: return e.isTransient ? transient : invalid
            }
        case is KVSnapError, is BlockError, is FetchError, is ExpandError, is PackError, is InboxError: return invalid
        case is StoreMissing: return notFound
        case is PolicyError, is ConfigFileError, is StoreSpecError, is StoreBindingError, is S3SettingError, is StoreOptionConflict, is OutputInsideStore: return usage
        default: return nil
        }
    }

    static func code(for error: Error) -> Int32 { domainCode(for: error) ?? usage }
}

@main
enum Main {
    static func main() {
        // Layers are allocated and freed a few at a time, tens of MB each: keep that memory in
        // the heap rather than mapping fresh zeroed pages for every layer and unmapping them.
        kvstore_keep_freed_memory()
        EventLoopPrimer.prime()
        do {
            var command = try KVStoreCommand.parseAsRoot()
            try command.run()
        } catch let exit as ExitCode {
            Foundation.exit(exit.rawValue)
        } catch where Exit.domainCode(for: error) != nil {
            Terminal.error("\(error)")
            Foundation.exit(Exit.code(for: error))
        } catch {
            let code = KVStoreCommand.exitCode(for: error)
            if code == .success { KVStoreCommand.exit(withError: error) }
            Terminal.usageError(message: KVStoreCommand.message(for: error), full: KVStoreCommand.fullMessage(for: error))
            Foundation.exit(Exit.usage)
        }
    }
}
