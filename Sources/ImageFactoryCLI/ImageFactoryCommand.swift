import ArgumentParser
import FactoryGit
import FactoryModel
import Foundation

/// The `imagefactory` command: builds golden images from a git repository and distributes them
/// to Azure DevTest Labs. The root only lists subcommands; each one is a small value.
public struct ImageFactoryCommand: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        commandName: "imagefactory",
        abstract: "An image factory for Azure DevTest Labs and Azure Compute Gallery.",
        discussion: """
            Reads Configuration/Labs.json and the ARM templates under Configuration/GoldenImages/ from a git \
            commit, builds one VM per golden image, captures it as a VHD, distributes it to every lab that \
            subscribes to it, and retires old images. The embedded local cloud is the default backend.

            Exit codes: 0 success, 1 work failed, 2 invalid configuration or input (nothing changed), \
            3 backend unreachable or authentication failed, 64 usage error, 75 factory busy (try again later), 130 interrupted.
            """,
        version: BuildInfo.versionString,
        subcommands: [
            ValidateCommand.self, PlanCommand.self, RunCommand.self, DoctorCommand.self, ApplyCommand.self, ImagesCommand.self, ReportGroupCommand.self, UnlockCommand.self,
            LocalCommand.self,
            StageCommand<BuildStage>.self, StageCommand<SnapStage>.self, StageCommand<DistributeStage>.self,
            StageCommand<CleanupStage>.self, StageCommand<RetireStage>.self,
        ])
}

/// The entry point of the `imagefactory` executable.
public enum ImageFactoryMain {
    /// Parses the process's arguments, runs the command and exits with its code.
    public static func run() async { await ImageFactoryCommand.main() }
}

/// Version and commit of this build, for `--version`.
enum BuildInfo {
    static let version = "0.1.0"

    /// The commit of the source tree this binary was built from: read with libgit2 from the
    /// package's own checkout (known at compile time through `#filePath`), when it is still there.
    static var commit: String {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path
        guard let repository = try? GitConfigSource.discoverRepository(from: sources),
              let head = try? GitConfigSource.headCommit(repositoryPath: repository) else { return "unknown commit" }
        return "commit " + String(head.prefix(12))
    }

    static var versionString: String { "imagefactory \(version) (\(commit))" }
}
