import ArgumentParser

/// Subcommands defined beside the core ones (synth, eval, watch, compact, job, serve, migrate).
enum ExtraCommands {
    static let all: [ParsableCommand.Type] = [SynthCommand.self, EvalCommand.self, WatchCommand.self, CompactCommand.self, JobCommand.self, ServeCommand.self, MigrateCommand.self]
}
