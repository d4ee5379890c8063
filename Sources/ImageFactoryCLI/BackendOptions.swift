import ArgumentParser
import AzureBackend
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
    @Option(name: .long, help: ArgumentHelp("The backend: local (the embedded local cloud) or azure (env IMAGEFACTORY_BACKEND).", valueName: "kind"))
    var backend: BackendKind?

    @Option(name: .long, help: ArgumentHelp("Azure: the cloud, AzureCloud (default), AzureChinaCloud or AzureUSGovernment (env IMAGEFACTORY_CLOUD).", valueName: "name"))
    var cloud: String?

    @Option(name: .long, help: ArgumentHelp("Azure: the ARM endpoint instead of the cloud's (env IMAGEFACTORY_ARM_ENDPOINT); http only on loopback.", valueName: "url"))
    var armEndpoint: String?

    @Option(name: .long, help: ArgumentHelp("Azure: extra trusted root certificates, PEM (env IMAGEFACTORY_CA_FILE).", valueName: "pem"))
    var caFile: String?

    @Option(name: .long, help: ArgumentHelp("Azure: how to sign in: auto, client-secret, client-certificate, workload-identity, github-oidc, azure-devops-oidc, managed-identity, azure-cli (env IMAGEFACTORY_AUTH).", valueName: "mode"))
    var auth: String?

    @Option(name: .long, help: ArgumentHelp("Azure: Blob authorization, entra (default: tokens, no keys read) or key (account keys from listKeys, Shared Key).", valueName: "mode"))
    var storageAuth: String?

    /// The backend kind: flag, then `IMAGEFACTORY_BACKEND`, then the local cloud.
    func kind(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> BackendKind {
        if let backend { return backend }
        guard let text = environment["IMAGEFACTORY_BACKEND"], !text.isEmpty else { return .local }
        guard let kind = BackendKind(rawValue: text.lowercased()) else {
            throw FactoryError(.usage, "IMAGEFACTORY_BACKEND is '\(text)'.", hint: "Use local or azure.")
        }
        return kind
    }

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
        switch try kind() {
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
            let azure = try openAzure(maxConcurrentJobs: configuration.settings.maxConcurrentJobs)
            let notes = ["Azure: \(azure.http.profile.name.rawValue) at \(azure.http.profile.armEndpoint.absoluteString), signed in as \(azure.identity), correlation id \(azure.http.correlationID)."]
            return OpenedBackend(backend: writes ? azure : PreviewBackend(base: azure, assumedLabs: []), notes: notes)
        }
    }

    /// The Azure backend behind an opened backend (read-only commands get it wrapped), or nil.
    static func azure(_ backend: any CloudBackend) -> AzureBackend? {
        backend as? AzureBackend ?? (backend as? PreviewBackend)?.base as? AzureBackend
    }

    /// The Azure backend from the options and the environment (every variable azure-identity reads).
    func openAzure(maxConcurrentJobs: Int, environment: [String: String] = ProcessInfo.processInfo.environment,
                   clock: any FactoryClock = SystemClock()) throws -> AzureBackend {
        let profile = try AzureCloudProfile.resolve(cloud: cloud, armEndpoint: armEndpoint, environment: environment)
        let authText = auth ?? environment["IMAGEFACTORY_AUTH"].flatMap { $0.isEmpty ? nil : $0 } ?? AuthMode.auto.rawValue
        guard let mode = AuthMode(rawValue: authText.lowercased()) else {
            throw FactoryError(.usage, "Unknown --auth mode '\(authText)'.", hint: "Use one of \(AuthMode.allCases.map(\.rawValue).joined(separator: ", ")).")
        }
        let storageText = storageAuth ?? environment["IMAGEFACTORY_STORAGE_AUTH"].flatMap { $0.isEmpty ? nil : $0 } ?? StorageAuthMode.entra.rawValue
        guard let storage = StorageAuthMode(rawValue: storageText.lowercased()) else {
            throw FactoryError(.usage, "Unknown --storage-auth mode '\(storageText)'.", hint: "Use entra or key.")
        }
        let transport = try AsyncHTTPTransport.shared(caFile: caFile ?? environment["IMAGEFACTORY_CA_FILE"].flatMap { $0.isEmpty ? nil : $0 })
        let credential: any TokenCredential
        do {
            credential = try CredentialFactory.make(mode: mode, profile: profile, environment: environment, transport: transport, clock: clock)
        } catch let error as AuthenticationError {
            throw FactoryError(.backendUnavailable, "Azure sign-in is not configured: \(error.message)", hint: error.hint)
        }
        let http = AzureHTTPClient(profile: profile, transport: transport, credential: credential, clock: clock,
                                   maxConcurrentWrites: maxConcurrentJobs)
        return AzureBackend(http: http, storageAuth: storage)
    }
}
