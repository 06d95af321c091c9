import ArgumentParser
import LightKV

struct PoliciesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policies", abstract: "List the built-in compression policies and the policy grammar.")

    func run() throws {
        print("Built-in policies (parts joined by +: reduction, quantization, codec):")
        for (name, what) in PolicyCatalog.builtIn {
            print("  " + name.padding(toLength: 26, withPad: " ", startingAt: 0) + what)
        }
        print("")
        print(PolicyCatalog.grammar)
    }
}
