import ArgumentParser
import FactoryModel
import Foundation

/// `imagefactory validate`: reads the configuration at a commit and reports every problem at once.
struct ValidateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check Labs.json and the golden-image templates at a commit; report every problem at once.")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup(title: "Factory settings") var settings: SettingsOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let configuration: FactoryConfiguration
        do {
            let snapshot = try repository.source().load()
            configuration = ConfigurationLoader.load(snapshot, settingsLayers: settings.layers())
        } catch {
            throw ErrorMapper.report(error, ci: output.ciMode)
        }
        if output.json {
            // Written as bytes: a large factory's report is tens of megabytes, so no string copies.
            var data = try JSONOutput.data(ConfigurationReport(configuration))
            data.append(UInt8(ascii: "\n"))
            FileHandle.standardOutput.write(data)
        } else {
            ValidationRenderer.print(configuration)
        }
        DiagnosticRenderer.printAnnotations(configuration.diagnostics, ci: output.ciMode)
        if !configuration.isValid { throw ExitCode(FactoryExitCode.invalidInput.rawValue) }
    }
}

enum JSONOutput {
    static func data<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(value)
    }

    static func encode<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try data(value), as: UTF8.self)
    }
}

/// The human view of `validate`.
enum ValidationRenderer {
    static func print(_ c: FactoryConfiguration) {
        let source = c.commit.map { "commit \($0)" } ?? "the working tree"
        Console.out("Configuration \(c.configDirectory)/ at \(source)")
        let deliveries = c.labs.reduce(0) { $0 + $1.images.count }
        Console.out("  \(c.templates.count) golden image template\(c.templates.count == 1 ? "" : "s"), \(c.labs.count) target lab\(c.labs.count == 1 ? "" : "s"), \(deliveries) image deliveries")
        if !c.templates.isEmpty && c.templates.count <= 200 {
            Console.out("\nTemplates:")
            let width = min(60, c.templates.map(\.path.count).max() ?? 0)
            for t in c.templates {
                let path = t.path.padding(toLength: max(width, t.path.count), withPad: " ", startingAt: 0)
                Console.out("  \(path)  \(t.osType.rawValue.padding(toLength: 7, withPad: " ", startingAt: 0)) \(t.osState.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)) vm \(t.vmName.padding(toLength: 15, withPad: " ", startingAt: 0)) image \(t.imageName)")
            }
        }
        if !c.labs.isEmpty && c.labs.count <= 200 {
            Console.out("\nLabs:")
            for lab in c.labs {
                let group = lab.resourceGroup ?? "(resource group found at run time)"
                Console.out("  \(lab.labName) [\(lab.subscriptionId) / \(group)]: \(lab.images.count) image\(lab.images.count == 1 ? "" : "s")")
                for image in lab.images { Console.out("    - \(image)") }
            }
        }
        if !c.diagnostics.isEmpty {
            Console.out("")
            DiagnosticRenderer.printText(c.diagnostics, to: Console.out)
        }
        let errors = c.diagnostics.errors.count, warnings = c.diagnostics.warnings.count
        Console.out("\n\(errors == 0 ? "Valid" : "Invalid"): \(errors) error\(errors == 1 ? "" : "s"), \(warnings) warning\(warnings == 1 ? "" : "s").")
    }
}
