import ArgumentParser
import FactoryGit
import FactoryModel
import Foundation

/// Where the configuration comes from: the repository, the revision and the folder.
struct RepositoryOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The git repository (default: the one containing the current directory).", valueName: "path"))
    var repo: String?

    @Option(name: .long, help: ArgumentHelp("Any revision git understands: branch, tag, SHA, HEAD~2.", valueName: "rev"))
    var ref: String = "HEAD"

    @Option(name: .long, help: ArgumentHelp("The configuration folder inside the repository.", valueName: "dir"))
    var configDir: String = "Configuration"

    @Flag(name: .long, help: "Read the working tree instead of a commit (for editing locally).")
    var worktree: Bool = false

    /// The repository's working directory (or git directory when bare).
    func repositoryPath() throws -> String {
        let start = repo ?? FileManager.default.currentDirectoryPath
        return try GitConfigSource.discoverRepository(from: start)
    }

    func source() throws -> GitConfigSource {
        GitConfigSource(repositoryPath: try repositoryPath(), mode: worktree ? .workingTree : .revision(ref), configDirectory: configDir)
    }
}

/// Factory settings as flags: the top layer over the settings file and `IMAGEFACTORY_*` variables.
struct SettingsOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Most jobs in flight at once, across all labs (default 20).", valueName: "n"))
    var maxConcurrentJobs: Int?

    @Option(help: ArgumentHelp("Images kept per image path (default 2).", valueName: "n"))
    var imagesToSave: Int?

    @Option(help: ArgumentHelp("Limit for each long-running operation, in minutes (default 60).", valueName: "minutes"))
    var timeoutMinutes: Int?

    @Option(help: ArgumentHelp("A run that would delete more images stops before deleting any (default 50).", valueName: "n"))
    var maxDeletions: Int?

    @Option(help: ArgumentHelp("The factory lab's name.", valueName: "name"))
    var factoryLab: String?

    @Option(help: ArgumentHelp("The factory lab's subscription id.", valueName: "id"))
    var subscriptionId: String?

    @Option(help: ArgumentHelp("The factory lab's resource group.", valueName: "name"))
    var resourceGroup: String?

    @Option(help: ArgumentHelp("The factory lab's location.", valueName: "region"))
    var location: String?

    @Option(help: ArgumentHelp("VM size for factory VMs.", valueName: "size"))
    var vmSize: String?

    @Option(help: ArgumentHelp("Default capture when a template does not say: generalized or specialized.", valueName: "state"))
    var defaultOsState: String?

    /// Environment first, then flags: later layers win.
    func layers(environment: [String: String] = ProcessInfo.processInfo.environment) -> [SettingsLayer] {
        var flags = SettingsLayer(origin: "command line")
        let pairs: [(SettingKey, String?)] = [
            (.maxConcurrentJobs, maxConcurrentJobs.map(String.init)), (.imagesToSave, imagesToSave.map(String.init)),
            (.timeoutMinutes, timeoutMinutes.map(String.init)), (.maxDeletions, maxDeletions.map(String.init)),
            (.factoryLab, factoryLab), (.subscriptionId, subscriptionId), (.resourceGroup, resourceGroup),
            (.location, location), (.vmSize, vmSize), (.defaultOsState, defaultOsState),
        ]
        for (key, value) in pairs { if let value { flags.values[key] = value } }
        return [SettingsLayer.environment(environment), flags]
    }
}

/// How findings are shown in CI.
enum CIMode: String, ExpressibleByArgument, CaseIterable {
    case azureDevOps = "azure-devops"
    case github
    case none

    /// Detected from the environment: `TF_BUILD` (Azure DevOps) or `GITHUB_ACTIONS`.
    static func detect(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> CIMode {
        if environment["TF_BUILD"]?.lowercased() == "true" { return .azureDevOps }
        if environment["GITHUB_ACTIONS"]?.lowercased() == "true" { return .github }
        return .none
    }
}

struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print machine-readable JSON instead of text.")
    var json: Bool = false

    @Option(name: .long, help: ArgumentHelp("CI annotations: azure-devops, github or none (default: detected).", valueName: "kind"))
    var ci: CIMode?

    var ciMode: CIMode { ci ?? CIMode.detect() }
}

/// Writes to standard output or standard error without buffering surprises.
enum Console {
    static func out(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    static func err(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }
}

/// Turns any error into the message a user reads and the exit code scripts rely on.
enum ErrorMapper {
    static func exitCode(for error: Error) -> FactoryExitCode {
        switch error {
        case let e as FactoryError: return e.exitCode
        case let e as CloudError: return e.isUnavailable ? .backendUnavailable : .workFailed
        case is CancellationError: return .interrupted
        default: return .workFailed
        }
    }

    /// Prints the error and returns the `ExitCode` to throw.
    static func report(_ error: Error, ci: CIMode) -> ExitCode {
        if let exit = error as? ExitCode { return exit }
        let code = exitCode(for: error)
        let diagnostics: [Diagnostic]
        switch error {
        case let e as FactoryError: diagnostics = e.diagnostics
        default: diagnostics = [.error("\(error.localizedDescription)")]
        }
        DiagnosticRenderer.printText(diagnostics, to: Console.err)
        DiagnosticRenderer.printAnnotations(diagnostics, ci: ci)
        return ExitCode(code.rawValue)
    }
}
