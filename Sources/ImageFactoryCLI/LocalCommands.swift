import ArgumentParser
import FactoryEngine
import FactoryModel
import Foundation
import LocalCloud
#if canImport(Glibc)
import Glibc
#endif

/// `imagefactory local`: look after the embedded local cloud. Create the labs the configuration
/// names, show what the cloud holds, reset it, and place resources the factory did not create so
/// retention and cleanup safety can be tried.
struct LocalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "local",
        abstract: "Set up, inspect and reset the embedded local cloud.",
        discussion: """
            The local cloud lives in a state directory (default .imagefactory/ in the repository, \
            or IMAGEFACTORY_STATE_DIR, or --state-dir). Commands that need it create its labs on first use; \
            `local init` does so explicitly.
            """,
        subcommands: [LocalInitCommand.self, LocalShowCommand.self, LocalResetCommand.self,
                      LocalAddVMCommand.self, LocalAddImageCommand.self, LocalAddGalleryVersionCommand.self, LocalServeCommand.self])
}

// MARK: - Bootstrap (shared with every command that uses the local cloud)

/// Creates what the factory expects to find in the local cloud: the factory lab with its VHD
/// container, and every lab of Labs.json. Idempotent: what exists is left alone, so any command
/// may call it before its first use of the local cloud.
enum LocalCloudBootstrap {
    /// The factory lab's identity from the settings.
    static func factoryLabID(_ settings: FactorySettings) -> LabID {
        LabID(subscriptionId: settings.subscriptionId, resourceGroup: settings.resourceGroup, name: settings.factoryLab)
    }

    /// A target lab's identity in the local cloud. Labs.json may omit the resource group (Azure finds
    /// it at run time); the local cloud then uses `<labName>-rg`.
    static func labID(for lab: TargetLab) -> LabID {
        LabID(subscriptionId: lab.subscriptionId, resourceGroup: lab.resourceGroup ?? "\(lab.labName)-rg", name: lab.labName)
    }

    /// The labs a configuration needs: the factory lab first, then every lab of Labs.json.
    static func wantedLabs(_ configuration: FactoryConfiguration) -> [(id: LabID, location: String, line: Int?)] {
        let settings = configuration.settings
        var wanted: [(id: LabID, location: String, line: Int?)] = [(factoryLabID(settings), settings.location, nil)]
        for lab in configuration.labs { wanted.append((labID(for: lab), lab.location ?? settings.location, lab.line)) }
        return wanted
    }

    /// The labs `ensure` would create, as they will be once made (reads only): a command that
    /// changes nothing plans as if they existed, empty.
    static func missingLabs(cloud: LocalCloud, configuration: FactoryConfiguration) async throws -> [Lab] {
        let client = CloudClient(backend: cloud)
        let existing = Set(try await client.call { try await cloud.allLabs() }.map(\.id.key))
        var seen = Set<String>()
        return wantedLabs(configuration).compactMap { wanted in
            guard !existing.contains(wanted.id.key), seen.insert(wanted.id.key).inserted else { return nil }
            return Lab(id: wanted.id, location: Location.normalize(wanted.location),
                       storageAccount: StorageAccountID(subscriptionId: wanted.id.subscriptionId, resourceGroup: wanted.id.resourceGroup,
                                                        name: LocalCloud.storageAccountName(for: wanted.id)))
        }
    }

    /// Creates the factory lab, its container and the labs of Labs.json where missing; returns one
    /// line per resource created (empty when everything existed). Labs the cloud refuses (a name
    /// Azure would not take) are reported together, with their Labs.json lines, after the others are made.
    /// Every call goes through the one client, so transient faults and throttling are retried.
    static func ensure(cloud: LocalCloud, configuration: FactoryConfiguration) async throws -> [String] {
        let settings = configuration.settings
        let client = CloudClient(backend: cloud)
        var existing = Dictionary(try await client.call { try await cloud.allLabs() }.map { ($0.id.key, $0) }, uniquingKeysWith: { first, _ in first })
        var created: [String] = []
        var refused: [Diagnostic] = []
        for (id, location, line) in wantedLabs(configuration) where existing[id.key] == nil {
            do {
                let lab = try await client.call { try await cloud.createLab(id, location: location) }
                existing[id.key] = lab
                created.append("lab \(lab.id.name) (subscription \(lab.id.subscriptionId), resource group \(lab.id.resourceGroup), \(lab.location), storage account \(lab.storageAccount.name))")
            } catch let error as CloudError where error.status == 400 {
                let file = line == nil ? nil : "\(configuration.configDirectory)/\(ConfigurationLoader.labsFile)"
                refused.append(.error(error.message, file: file, line: line,
                                      hint: line == nil ? "Fix the factory lab's name in the settings." : "Fix LabName in Labs.json."))
            }
        }
        if !refused.isEmpty { throw FactoryError(.invalidInput, refused) }
        guard let factory = existing[factoryLabID(settings).key] else { return created }
        let container = ContainerID(account: factory.storageAccount, name: settings.container)
        let containers = try await client.call { try await cloud.listContainers(account: factory.storageAccount) }
        if !containers.contains(container.name) {
            do {
                try await client.call { try await cloud.createContainer(container) }
                created.append("container \(container) in the factory lab's storage account")
            } catch let error as CloudError where error.code == "ContainerAlreadyExists" {
                // Another process made it between the list and the create (or our own retried request did): what we wanted.
            }
        }
        return created
    }
}

// MARK: - Shared pieces of the local commands

extension BackendOptions {
    /// The repository path to derive the state directory from. A repository is required only when
    /// neither `--state-dir` nor `IMAGEFACTORY_STATE_DIR` says where the state is, so `show` and
    /// `reset` work on any state directory.
    func localRepositoryPath(_ repository: RepositoryOptions,
                             environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        if stateDir != nil || !(environment["IMAGEFACTORY_STATE_DIR"] ?? "").isEmpty {
            return (try? repository.repositoryPath()) ?? FileManager.default.currentDirectoryPath
        }
        return try repository.repositoryPath()
    }

    /// `local` commands act on the embedded local cloud only.
    func validateLocal() throws {
        if let backend, backend != .local {
            throw ValidationError("`imagefactory local` works on the embedded local cloud only; drop --backend \(backend.rawValue).")
        }
    }
}

/// What `local` commands share: the configuration, the opened cloud and lab look-up.
private struct LocalSession {
    var configuration: FactoryConfiguration
    var cloud: LocalCloud

    /// Loads the configuration and opens the local cloud in its state directory.
    static func open(_ repository: RepositoryOptions, _ backend: BackendOptions) throws -> LocalSession {
        let snapshot = try repository.source().load()
        let configuration = ConfigurationLoader.load(snapshot, settingsLayers: [SettingsLayer.environment(ProcessInfo.processInfo.environment)])
        let repositoryPath = try repository.repositoryPath()
        return LocalSession(configuration: configuration, cloud: try backend.openLocalCloud(repositoryPath: repositoryPath))
    }

    /// The lab named `name` among the labs of Labs.json and the factory lab (case-insensitive, as Azure).
    func lab(named name: String) async throws -> Lab {
        let settings = configuration.settings
        var candidates = [LocalCloudBootstrap.factoryLabID(settings)]
        candidates += configuration.labs.map(LocalCloudBootstrap.labID(for:))
        var matches: [LabID] = []
        for id in candidates where id.name.lowercased() == name.lowercased() && !matches.contains(where: { $0.key == id.key }) {
            matches.append(id)
        }
        guard let id = matches.first else {
            let known = ([settings.factoryLab] + configuration.labs.map(\.labName)).prefix(20).joined(separator: ", ")
            throw FactoryError.invalidInput("There is no lab named \"\(name)\" in Labs.json, and it is not the factory lab.",
                                            hint: "Known labs: \(known).")
        }
        guard matches.count == 1 else {
            throw FactoryError.invalidInput("Several labs are named \"\(name)\": \(matches.map(\.description).joined(separator: "; ")).",
                                            hint: "Give the labs distinct names in Labs.json.")
        }
        return try await cloud.getLab(id)
    }

    /// Uploads a small (1 MiB, sparse) generalized VHD into the account's `manual` container, as a
    /// person would before making an image or version from it; the caller deletes it once used.
    func placeVHD(os: OSType, label: String, in account: StorageAccountID, name: String, metadata: [String: String] = [:]) async throws -> BlobID {
        let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("imagefactory-\(UUID().uuidString).vhd")
        defer { try? FileManager.default.removeItem(at: temporary) }
        try VirtualDisk.write(VirtualDisk.Content(osType: os, baseImage: "manual:\(label)", artifacts: [], generalized: true, virtualSize: 1 << 20),
                              to: temporary)
        let container = ContainerID(account: account, name: LocalAddImageCommand.container)
        do {
            try await cloud.createContainer(container)
        } catch let error as CloudError where error.code == "ContainerAlreadyExists" {}
        let blob = BlobID(container: container, name: "\(name)-\(UUID().uuidString.prefix(8).lowercased()).vhd")
        _ = try await cloud.putPageBlob(blob, data: try Data(contentsOf: temporary), metadata: metadata)
        return blob
    }

    /// The one client: retries, throttling and polling for the local commands too.
    var client: CloudClient { CloudClient(backend: cloud) }

    /// Polls a long-running operation until it ends, within the factory's operation time limit.
    func wait(_ handle: OperationHandle, what: String) async throws {
        do {
            try await client.wait(for: handle, timeout: Double(configuration.settings.timeoutMinutes) * 60)
        } catch let error as CloudError where error.code == "OperationTimedOut" {
            throw FactoryError(.workFailed, "\(what) did not finish within \(configuration.settings.timeoutMinutes) minutes.")
        }
    }
}

/// Parses repeated `--tag KEY=VALUE` options into tags.
private enum TagArguments {
    static func parse(_ values: [String]) throws -> [String: String] {
        var tags: [String: String] = [:]
        for value in values {
            guard let eq = value.firstIndex(of: "="), eq != value.startIndex else {
                throw ValidationError("--tag \(value) is not KEY=VALUE.")
            }
            let key = String(value[..<eq])
            if tags[key] != nil { throw ValidationError("--tag \(key) is given twice.") }
            tags[key] = String(value[value.index(after: eq)...])
        }
        return tags
    }
}

/// In `add-vm` and `add-image` the user chose the names directly, so what the cloud refuses about
/// them (400, a 409 name conflict) is invalid input (exit 2), not failed work.
private func inputError(_ error: Error, hint: String) -> Error {
    guard let cloud = error as? CloudError, cloud.status == 400 || (cloud.status == 409 && cloud.code == "Conflict") else { return error }
    return FactoryError.invalidInput(cloud.message, hint: hint)
}

private extension OSType {
    /// A marketplace image for a manually placed VM.
    var marketplaceImage: [String: String] {
        switch self {
        case .windows: ["publisher": "MicrosoftWindowsServer", "offer": "WindowsServer", "sku": "2022-datacenter", "version": "latest", "osType": "Windows"]
        case .linux: ["publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts", "version": "latest", "osType": "Linux"]
        }
    }
}

enum LocalOSArgument: String, ExpressibleByArgument, CaseIterable {
    case windows, linux
    var osType: OSType { self == .windows ? .windows : .linux }
}

// MARK: - local init

/// `imagefactory local init`: creates the factory lab, its container and every lab of Labs.json.
struct LocalInitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create the factory lab and every lab of Labs.json in the local cloud (idempotent).")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var backend: BackendOptions

    func validate() throws { try backend.validateLocal() }

    func run() async throws {
        do {
            let session = try LocalSession.open(repository, backend)
            guard session.configuration.isValid else {
                throw FactoryError(.invalidInput, session.configuration.diagnostics.errors)
            }
            let created = try await LocalCloudBootstrap.ensure(cloud: session.cloud, configuration: session.configuration)
            let labs = session.configuration.labs.count + 1
            Console.out("Local cloud in \(session.cloud.stateDirectory.path)")
            if created.isEmpty {
                Console.out("Nothing to create: the factory lab, its container and the \(labs - 1) lab\(labs == 2 ? "" : "s") of Labs.json exist.")
            } else {
                for line in created { Console.out("  created \(line)") }
                Console.out("Created \(created.count) resource\(created.count == 1 ? "" : "s"); \(labs) lab\(labs == 1 ? "" : "s") in all.")
            }
        } catch {
            throw ErrorMapper.report(error, ci: CIMode.detect())
        }
    }
}

// MARK: - local show

/// What `local show --json` prints: the whole local cloud.
struct LocalCloudInventory: Codable, Sendable {
    struct VM: Codable, Sendable {
        var name: String
        var tags: [String: String]
        var provisioningState: String
        var powerState: String
        var osType: String?
        var generalized: Bool
    }

    struct Image: Codable, Sendable {
        var name: String
        var tags: [String: String]
        var createdAt: Date
        var provisioningState: String
        var osType: String
    }

    struct Blob: Codable, Sendable {
        var name: String
        var contentLength: Int64
        var copyStatus: String?
    }

    struct Container: Codable, Sendable {
        var name: String
        var blobs: [Blob]
    }

    struct LabEntry: Codable, Sendable {
        var subscriptionId: String
        var resourceGroup: String
        var name: String
        var location: String
        var storageAccount: String
        var vms: [VM]
        var customImages: [Image]
        var containers: [Container]
    }

    struct Replica: Codable, Sendable {
        var region: String
        var state: String
    }

    struct Version: Codable, Sendable {
        var name: String
        var tags: [String: String]
        var excludeFromLatest: Bool
        var endOfLife: Date?
        var replication: [Replica]
    }

    struct Definition: Codable, Sendable {
        var name: String
        var osType: String
        var osState: String
        var tags: [String: String]
        var versions: [Version]
    }

    struct GalleryEntry: Codable, Sendable {
        var name: String
        var subscriptionId: String
        var resourceGroup: String
        var location: String
        var tags: [String: String]
        var definitions: [Definition]
    }

    var stateDirectory: String
    var labs: [LabEntry]
    var galleries: [GalleryEntry] = []

    /// Reads everything through the backend's own calls.
    static func read(_ cloud: LocalCloud) async throws -> LocalCloudInventory {
        var labs: [LabEntry] = []
        for lab in try await cloud.allLabs() {
            let vms = try await cloud.listVirtualMachines(lab: lab.id).map {
                VM(name: $0.id.name, tags: $0.tags, provisioningState: $0.provisioningState.rawValue, powerState: $0.powerState.rawValue,
                   osType: $0.osType?.rawValue, generalized: $0.generalized)
            }
            let images = try await cloud.listCustomImages(lab: lab.id).map {
                Image(name: $0.id.name, tags: $0.tags, createdAt: $0.createdAt, provisioningState: $0.provisioningState.rawValue, osType: $0.osType.rawValue)
            }
            var containers: [Container] = []
            for name in try await cloud.listContainers(account: lab.storageAccount) {
                let blobs = try await cloud.listBlobs(container: ContainerID(account: lab.storageAccount, name: name), prefix: nil)
                containers.append(Container(name: name, blobs: blobs.map {
                    Blob(name: $0.id.name, contentLength: $0.contentLength, copyStatus: $0.copyStatus?.rawValue)
                }))
            }
            labs.append(LabEntry(subscriptionId: lab.id.subscriptionId, resourceGroup: lab.id.resourceGroup, name: lab.id.name,
                                 location: lab.location, storageAccount: lab.storageAccount.name, vms: vms, customImages: images,
                                 containers: containers))
        }
        var galleries: [GalleryEntry] = []
        for gallery in try await cloud.allGalleries().sorted(by: { $0.id.name.lowercased() < $1.id.name.lowercased() }) {
            var definitions: [Definition] = []
            for definition in try await cloud.listImageDefinitions(gallery.id).sorted(by: { $0.id.name < $1.id.name }) {
                let versions = try await cloud.listImageVersions(definition.id).sorted { VersionNumber($0.id.version) < VersionNumber($1.id.version) }.map {
                    Version(name: $0.id.version, tags: $0.tags, excludeFromLatest: $0.excludeFromLatest, endOfLife: $0.endOfLife,
                            replication: $0.replication.map { Replica(region: $0.region, state: $0.state) })
                }
                definitions.append(Definition(name: definition.id.name, osType: definition.osType.rawValue,
                                              osState: definition.osState == .generalized ? "Generalized" : "Specialized",
                                              tags: definition.tags, versions: versions))
            }
            galleries.append(GalleryEntry(name: gallery.id.name, subscriptionId: gallery.id.subscriptionId, resourceGroup: gallery.id.resourceGroup,
                                          location: gallery.location, tags: gallery.tags, definitions: definitions))
        }
        return LocalCloudInventory(stateDirectory: cloud.stateDirectory.path, labs: labs, galleries: galleries)
    }
}

/// The human view of `local show`: one tree per lab.
enum LocalCloudInventoryRenderer {
    struct Node {
        var text: String
        var children: [Node] = []
    }

    static func lines(_ inventory: LocalCloudInventory) -> [String] {
        var out = ["Local cloud in \(inventory.stateDirectory): \(count(inventory.labs.count, "lab"))"]
        for lab in inventory.labs {
            out.append("")
            out.append("\(lab.name)  [\(lab.subscriptionId) / \(lab.resourceGroup)]  \(lab.location)")
            let vms = lab.vms.map { vm in
                Node(text: "\(vm.name)  \(vm.provisioningState), \(vm.powerState)\(vm.generalized ? ", generalized" : "")\(tagText(vm.tags))")
            }
            let images = lab.customImages.map { image in
                Node(text: "\(image.name)  \(image.provisioningState), created \(image.createdAt.ISO8601Format())\(tagText(image.tags))")
            }
            let containers = lab.containers.map { container in
                Node(text: "\(container.name)/  (\(count(container.blobs.count, "blob")))", children: container.blobs.map { blob in
                    Node(text: "\(blob.name)  \(byteText(blob.contentLength))\(blob.copyStatus.map { ", copy \($0)" } ?? "")")
                })
            }
            render([
                Node(text: "virtual machines (\(lab.vms.count))", children: vms),
                Node(text: "custom images (\(lab.customImages.count))", children: images),
                Node(text: "storage account \(lab.storageAccount) (\(count(lab.containers.count, "container")))", children: containers),
            ], prefix: "", into: &out)
        }
        for gallery in inventory.galleries {
            out.append("")
            out.append("gallery \(gallery.name)  [\(gallery.subscriptionId) / \(gallery.resourceGroup)]  \(gallery.location)\(tagText(gallery.tags))")
            render(gallery.definitions.map { definition in
                Node(text: "\(definition.name)  \(definition.osType) \(definition.osState)\(tagText(definition.tags))", children: definition.versions.map { version in
                    let regions = version.replication.map { "\($0.region) \($0.state.lowercased())" }.joined(separator: ", ")
                    return Node(text: "\(version.name)  \(regions)\(version.excludeFromLatest ? ", excluded from latest" : "")\(tagText(version.tags))")
                })
            }, prefix: "", into: &out)
        }
        return out
    }

    static func render(_ nodes: [Node], prefix: String, into out: inout [String]) {
        for (i, node) in nodes.enumerated() {
            let last = i == nodes.count - 1
            out.append(prefix + (last ? "└─ " : "├─ ") + node.text)
            render(node.children, prefix: prefix + (last ? "   " : "│  "), into: &out)
        }
    }

    static func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }

    static func tagText(_ tags: [String: String]) -> String {
        tags.isEmpty ? "" : "  tags: " + tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
    }

    static func byteText(_ bytes: Int64) -> String {
        let value = Double(bytes)
        if bytes >= 1 << 30 { return String(format: "%.2f GiB", value / 1_073_741_824) }
        if bytes >= 1 << 20 { return String(format: "%.1f MiB", value / 1_048_576) }
        if bytes >= 1 << 10 { return String(format: "%.1f KiB", value / 1024) }
        return "\(bytes) bytes"
    }
}

/// `imagefactory local show`: labs, VMs, custom images and blobs as a tree, or JSON.
struct LocalShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show the local cloud's labs, VMs, custom images and blobs.")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var backend: BackendOptions
    @OptionGroup var output: OutputOptions

    func validate() throws { try backend.validateLocal() }

    func run() async throws {
        do {
            let repositoryPath = try backend.localRepositoryPath(repository)
            let directory = backend.stateDirectory(repositoryPath: repositoryPath)
            let inventory: LocalCloudInventory
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent("cloud.sqlite").path) {
                let cloud = try backend.openLocalCloud(repositoryPath: repositoryPath)
                inventory = try await LocalCloudInventory.read(cloud)
            } else {
                // Showing must not create a cloud: an absent one is simply empty.
                inventory = LocalCloudInventory(stateDirectory: directory.path, labs: [])
            }
            if output.json {
                Console.out(try JSONOutput.encode(inventory))
            } else {
                LocalCloudInventoryRenderer.lines(inventory).forEach(Console.out)
                if inventory.labs.isEmpty { Console.out("Run `imagefactory local init` to create the labs of Labs.json.") }
            }
        } catch {
            throw ErrorMapper.report(error, ci: output.ciMode)
        }
    }
}

// MARK: - local reset

/// `imagefactory local reset`: deletes the local cloud's state, so the next command starts afresh.
struct LocalResetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reset",
        abstract: "Delete everything in the local cloud's state directory.",
        discussion: "Asks for --yes when run from a terminal. Only a directory holding a local cloud (cloud.sqlite) is touched.")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var backend: BackendOptions

    @Flag(name: .long, help: "Delete without asking (needed when standard input is a terminal).")
    var yes = false

    func validate() throws { try backend.validateLocal() }

    func run() async throws {
        do {
            let directory = backend.stateDirectory(repositoryPath: try backend.localRepositoryPath(repository))
            let fm = FileManager.default
            guard fm.fileExists(atPath: directory.path) else {
                Console.out("Nothing to reset: \(directory.path) does not exist.")
                return
            }
            guard fm.fileExists(atPath: directory.appendingPathComponent("cloud.sqlite").path) else {
                throw FactoryError.invalidInput("\(directory.path) does not look like a local cloud state directory (no cloud.sqlite); nothing was deleted.",
                                                hint: "Check --state-dir or IMAGEFACTORY_STATE_DIR.")
            }
            if isatty(STDIN_FILENO) != 0 && !yes {
                throw FactoryError.invalidInput("Resetting deletes everything in \(directory.path).",
                                                hint: "Run again with --yes to confirm.")
            }
            let entries = try fm.contentsOfDirectory(atPath: directory.path).sorted()
            var total: Int64 = 0
            Console.out("Resetting the local cloud in \(directory.path)")
            for name in entries {
                let url = directory.appendingPathComponent(name)
                let (files, bytes, isDirectory) = Self.measure(url)
                try fm.removeItem(at: url)
                total += bytes
                let contents = isDirectory ? "\(LocalCloudInventoryRenderer.count(files, "file")), " : ""
                Console.out("  removed \(name)\(isDirectory ? "/" : "")  (\(contents)\(LocalCloudInventoryRenderer.byteText(bytes)) on disk)")
            }
            Console.out("Removed \(entries.count) entr\(entries.count == 1 ? "y" : "ies"), \(LocalCloudInventoryRenderer.byteText(total)) on disk.")
        } catch {
            throw ErrorMapper.report(error, ci: CIMode.detect())
        }
    }

    /// Files under a path and the bytes they occupy on disk (sparse files count only their data).
    static func measure(_ url: URL) -> (files: Int, bytes: Int64, isDirectory: Bool) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else { return (0, 0, false) }
        guard isDirectory.boolValue else { return (1, SparseFile.allocatedBytes(url), false) }
        var files = 0
        var bytes: Int64 = 0
        let enumerator = FileManager.default.enumerator(at: url, includingPropertiesForKeys: [.isRegularFileKey])
        while let item = enumerator?.nextObject() as? URL {
            if (try? item.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
                files += 1
                bytes += SparseFile.allocatedBytes(item)
            }
        }
        return (files, bytes, true)
    }
}

// MARK: - local add-vm / add-image

/// What `add-vm` and `add-image` both take: where, what, and its tags.
struct ForeignResourceOptions: ParsableArguments {
    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var backend: BackendOptions

    @Option(help: ArgumentHelp("A lab of Labs.json, or the factory lab.", valueName: "lab"))
    var lab: String

    @Option(help: ArgumentHelp("The resource's name (a Windows VM's: at most 15 characters).", valueName: "name"))
    var name: String

    @Option(name: .customLong("tag"), help: ArgumentHelp("A tag on the resource; repeat for more.", valueName: "key=value"))
    var tags: [String] = []

    @Option(help: ArgumentHelp("The operating system.", valueName: "os"))
    var os: LocalOSArgument = .windows
}

/// `imagefactory local add-vm`: deploys a VM the factory did not create.
struct LocalAddVMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add-vm",
        abstract: "Place a VM the factory did not create in a lab (to try retention and cleanup safety).")

    @OptionGroup var resource: ForeignResourceOptions

    var repository: RepositoryOptions { resource.repository }
    var backend: BackendOptions { resource.backend }
    var lab: String { resource.lab }
    var name: String { resource.name }
    var tags: [String] { resource.tags }
    var os: LocalOSArgument { resource.os }

    func validate() throws {
        try backend.validateLocal()
        _ = try TagArguments.parse(tags)
    }

    /// A minimal lab VM template, as a person deploying from the portal would produce.
    static func template(name: String, lab: String, os: OSType) throws -> Data {
        let resource: [String: Any] = [
            "type": "Microsoft.DevTestLab/labs/virtualmachines",
            "apiVersion": "2018-09-15",
            "name": "\(lab)/\(name)",
            "location": "[resourceGroup().location]",
            "properties": [
                "galleryImageReference": os.marketplaceImage,
                "size": "Standard_B2s",
                "userName": "labuser",
                "allowClaim": false,
            ] as [String: Any],
        ]
        let template: [String: Any] = [
            "$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json#",
            "contentVersion": "1.0.0.0",
            "resources": [resource],
        ]
        return try JSONSerialization.data(withJSONObject: template, options: [.sortedKeys, .prettyPrinted])
    }

    func run() async throws {
        do {
            let tags = try TagArguments.parse(self.tags)
            if let problem = Naming.vmNameProblem(name, osType: os.osType) {
                throw FactoryError.invalidInput("The VM name \"\(name)\" is invalid: it \(problem).", hint: "Choose another --name.")
            }
            let session = try LocalSession.open(repository, backend)
            _ = try await LocalCloudBootstrap.ensure(cloud: session.cloud, configuration: session.configuration)
            let lab = try await session.lab(named: self.lab)
            let id = VirtualMachineID(lab: lab.id, name: name)
            let request = VMDeploymentRequest(
                vm: id, template: try Self.template(name: name, lab: lab.id.name, os: os.osType),
                parameters: ["newVMName": name, "labName": lab.id.name], artifacts: [], tags: tags, deploymentName: "manual-\(name)")
            let handle: OperationHandle
            do {
                handle = try await session.client.call { try await session.cloud.deployVirtualMachine(request) }
            } catch {
                throw inputError(error, hint: "Choose another --name; `imagefactory local show` lists the lab's VMs.")
            }
            try await session.wait(handle, what: "The deployment of VM \(name)")
            let vm = try await session.cloud.getVirtualMachine(id)
            Console.out("Added VM \(vm.id.name) to lab \(lab.id.name): \(vm.provisioningState), \(vm.powerState)\(LocalCloudInventoryRenderer.tagText(vm.tags))")
        } catch {
            throw ErrorMapper.report(error, ci: CIMode.detect())
        }
    }
}

/// `imagefactory local add-image`: creates a custom image the factory did not create.
struct LocalAddImageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add-image",
        abstract: "Place a custom image the factory did not create in a lab (to try retention and cleanup safety).")

    @OptionGroup var resource: ForeignResourceOptions

    var repository: RepositoryOptions { resource.repository }
    var backend: BackendOptions { resource.backend }
    var lab: String { resource.lab }
    var name: String { resource.name }
    var tags: [String] { resource.tags }
    var os: LocalOSArgument { resource.os }

    /// The container that briefly holds the image's VHD in the lab's storage account.
    static let container = "manual"

    func validate() throws {
        try backend.validateLocal()
        _ = try TagArguments.parse(tags)
        if name.trimmingCharacters(in: .whitespaces).isEmpty || name.count > 80 || name.contains(where: { "/\\?#%<>&".contains($0) }) {
            throw ValidationError("--name \"\(name)\" is not a custom image name: use 1 to 80 characters, none of / \\ ? # % < > &.")
        }
    }

    func run() async throws {
        do {
            let tags = try TagArguments.parse(self.tags)
            let session = try LocalSession.open(repository, backend)
            _ = try await LocalCloudBootstrap.ensure(cloud: session.cloud, configuration: session.configuration)
            let lab = try await session.lab(named: self.lab)
            let cloud = session.cloud

            // A small generalized VHD in the lab's own storage, as DevTest Labs requires.
            let blob = try await session.placeVHD(os: os.osType, label: name, in: lab.storageAccount,
                                                  name: name.replacingOccurrences(of: " ", with: "-"), metadata: ["createdBy": "imagefactory local add-image"])
            let id = CustomImageID(lab: lab.id, name: name)
            let request = CustomImageRequest(id: id, vhd: blob, osType: os.osType, sysprep: true,
                                             description: "Placed by `imagefactory local add-image`.", author: "imagefactory local", tags: tags)
            do {
                let handle: OperationHandle
                do {
                    handle = try await session.client.call { try await cloud.createCustomImage(request) }
                } catch {
                    throw inputError(error, hint: "Choose another --name; `imagefactory local show` lists the lab's custom images.")
                }
                try await session.wait(handle, what: "The creation of custom image \(name)")
            } catch {
                try? await cloud.deleteBlob(blob)
                throw error
            }
            // The image keeps its own copy of the disk: the VHD blob has served its purpose.
            try await cloud.deleteBlob(blob)
            let image = try await cloud.getCustomImage(id)
            Console.out("Added custom image \(image.id.name) to lab \(lab.id.name): \(image.provisioningState)\(LocalCloudInventoryRenderer.tagText(image.tags))")
        } catch {
            throw ErrorMapper.report(error, ci: CIMode.detect())
        }
    }
}

/// `imagefactory local add-gallery-version`: places a gallery version the factory did not make
/// (its definition and gallery are created when missing), to try that retention leaves it alone.
struct LocalAddGalleryVersionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add-gallery-version",
        abstract: "Place a gallery version the factory did not make (to try retention safety).",
        discussion: "The gallery is the Labs.json gallery of that name, or one in the factory's subscription and resource group.")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var backend: BackendOptions

    @Option(help: ArgumentHelp("The gallery's name.", valueName: "name"))
    var gallery: String

    @Option(help: ArgumentHelp("The image definition's name.", valueName: "name"))
    var definition: String

    @Option(name: .customLong("image-version"), help: ArgumentHelp("The version, Major.Minor.Patch.", valueName: "x.y.z"))
    var imageVersion: String

    @Option(name: .customLong("tag"), help: ArgumentHelp("A tag on the version; repeat for more.", valueName: "key=value"))
    var tags: [String] = []

    @Option(help: ArgumentHelp("The operating system.", valueName: "os"))
    var os: LocalOSArgument = .windows

    func validate() throws {
        try backend.validateLocal()
        _ = try TagArguments.parse(tags)
        guard GalleryVersioning.isValid(imageVersion) else {
            throw ValidationError("--image-version \"\(imageVersion)\" is not Major.Minor.Patch with 32-bit integers.")
        }
    }

    func run() async throws {
        do {
            let tags = try TagArguments.parse(self.tags)
            let session = try LocalSession.open(repository, backend)
            _ = try await LocalCloudBootstrap.ensure(cloud: session.cloud, configuration: session.configuration)
            let cloud = session.cloud
            let settings = session.configuration.settings
            let configured = session.configuration.galleries.first { $0.galleryName.lowercased() == gallery.lowercased() }
            let galleryID = configured?.id ?? GalleryID(subscriptionId: settings.subscriptionId, resourceGroup: settings.resourceGroup, name: gallery)
            let location = configured?.location ?? settings.location
            if (try? await cloud.getGallery(galleryID)) == nil {
                try await session.wait(try await session.client.call { try await cloud.createGallery(galleryID, location: location, description: "Placed by `imagefactory local add-gallery-version`.", tags: [:]) },
                                       what: "The creation of gallery \(gallery)")
            }
            let definitionID = GalleryImageDefinitionID(gallery: galleryID, name: definition)
            if (try? await cloud.getImageDefinition(definitionID)) == nil {
                let request = GalleryImageDefinition(id: definitionID, location: location, osType: os.osType, osState: .generalized, publisher: "Manual",
                                                     offer: definition, sku: "manual", provisioningState: "")
                try await session.wait(try await session.client.call { try await cloud.createImageDefinition(request) }, what: "The creation of definition \(definition)")
            }
            // A small generalized VHD in the factory lab's storage as the source.
            let factory = try await session.lab(named: settings.factoryLab)
            let blob = try await session.placeVHD(os: os.osType, label: definition, in: factory.storageAccount, name: "\(definition)-\(imageVersion)")
            let id = GalleryImageVersionID(definition: definitionID, version: imageVersion)
            do {
                let handle: OperationHandle
                do {
                    handle = try await session.client.call {
                        try await cloud.createImageVersion(GalleryImageVersionRequest(id: id, location: location, sourceVHD: blob,
                                                                                      targetRegions: [TargetRegion(name: Location.normalize(location))], tags: tags))
                    }
                } catch {
                    throw inputError(error, hint: "Choose another --image-version; `imagefactory local show` lists the gallery's versions.")
                }
                try await session.wait(handle, what: "The creation of version \(imageVersion)")
            } catch {
                try? await cloud.deleteBlob(blob)
                throw error
            }
            try await cloud.deleteBlob(blob)
            Console.out("Added version \(imageVersion) to \(gallery)/\(definition)\(LocalCloudInventoryRenderer.tagText(tags))")
        } catch {
            throw ErrorMapper.report(error, ci: CIMode.detect())
        }
    }
}
