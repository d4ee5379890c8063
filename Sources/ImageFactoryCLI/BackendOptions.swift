import ArgumentParser
import FactoryModel
import Foundation
import LocalCloud

enum BackendKind: String, ExpressibleByArgument, CaseIterable {
    case local
    case azure
}

/// A backend opened for one command, and what the command should tell people about it.
struct OpenedBackend {
    var backend: any CloudBackend
    var notes: [String]
}

/// Which cloud a command talks to. The embedded local cloud is the default.
struct BackendOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The backend: local (the embedded local cloud) or azure.", valueName: "kind"))
    var backend: BackendKind = .local

    @Option(name: .long, help: ArgumentHelp("The local cloud's state directory (default: .imagefactory/ in the repository; env IMAGEFACTORY_STATE_DIR).", valueName: "dir"))
    var stateDir: String?

    /// The state directory: flag, then `IMAGEFACTORY_STATE_DIR`, then `.imagefactory/` in the repository.
    func stateDirectory(repositoryPath: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        if let stateDir { return URL(fileURLWithPath: stateDir) }
        if let env = environment["IMAGEFACTORY_STATE_DIR"], !env.isEmpty { return URL(fileURLWithPath: env) }
        return URL(fileURLWithPath: repositoryPath).appendingPathComponent(".imagefactory")
    }

    /// Opens the local cloud (creating its state on first use, so a fresh clone needs no set-up step).
    func openLocalCloud(repositoryPath: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> LocalCloud {
        let directory = stateDirectory(repositoryPath: repositoryPath, environment: environment)
        let settings = try LocalCloudSettings.resolve(stateDirectory: directory, environment: environment)
        do {
            return try LocalCloud(stateDirectory: directory, settings: settings, onHold: { name in
                Console.err("imagefactory: local cloud holding after \(name) (IMAGEFACTORY_LOCAL_HOLD_AFTER)")
            })
        } catch let error as FactoryError {
            throw error
        } catch {
            throw FactoryError(.backendUnavailable, "Cannot open the local cloud in \(directory.path): \(error)",
                               hint: "Check the directory is writable, or pass --state-dir.")
        }
    }

    /// Opens the backend for a command. `writes` says whether the command may change the cloud:
    /// one that may not gets a `PreviewBackend` that refuses every write; on the local cloud, one
    /// that may first creates the labs the configuration names (so a fresh clone needs no set-up
    /// step), while one that may not plans as if they existed, and says so in `notes`.
    func openBackend(repositoryPath: String, configuration: FactoryConfiguration, writes: Bool) async throws -> OpenedBackend {
        switch backend {
        case .local:
            let cloud = try openLocalCloud(repositoryPath: repositoryPath)
            if writes {
                _ = try await LocalCloudBootstrap.ensure(cloud: cloud, configuration: configuration)
                return OpenedBackend(backend: cloud, notes: [])
            }
            let missing = try await LocalCloudBootstrap.missingLabs(cloud: cloud, configuration: configuration)
            let notes = missing.map { "The local cloud has no lab \($0.id.name) yet: a run creates it (or `imagefactory local init`); planned as empty." }
            return OpenedBackend(backend: PreviewBackend(base: cloud, assumedLabs: missing), notes: notes)
        case .azure:
            throw FactoryError(.backendUnavailable, "The Azure backend is not available in this build yet.",
                               hint: "Use --backend local (the default) to run the factory on the embedded local cloud.")
        }
    }
}
