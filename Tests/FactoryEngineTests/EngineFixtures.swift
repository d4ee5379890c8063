import FactoryEngine
import FactoryModel
import Foundation
import LocalCloud
import Testing
import TestSupport

// Fixtures shared by the planner unit tests and the executor integration tests: an in-memory
// configuration folder, hand-built inventories, and a local cloud in a temporary directory.

/// A configuration folder in memory: settings, Labs.json and golden-image templates.
struct FactoryFixture {
    struct LabEntry {
        var subscriptionId: String
        var resourceGroup: String
        var labName: String
        var location: String
        var imagePaths: [String]
    }

    static let factorySubscription = "00000000-0000-4000-8000-000000000000"

    var settings: [String: Any] = [
        "subscriptionId": FactoryFixture.factorySubscription,
        "resourceGroup": "rg-factory",
        "factoryLab": "ImageFactory",
        "location": "westeurope",
        "maxConcurrentJobs": 4,
        "imagesToSave": 2,
        "maxDeletions": 50,
        "timeoutMinutes": 5,
    ]
    var labs: [LabEntry]
    /// Template text by path under GoldenImages/.
    var templates: [String: String]
    var commit: String? = "c0ffee0000000000000000000000000000000001"

    /// The files of the configuration folder.
    var files: [String: String] {
        var files = ["FactorySettings.json": FactoryFixture.json(settings), "Labs.json": labsJSON]
        for (path, text) in templates { files["GoldenImages/" + path] = text }
        return files
    }

    var labsJSON: String {
        FactoryFixture.json(["Labs": labs.map {
            ["SubscriptionId": $0.subscriptionId, "ResourceGroup": $0.resourceGroup, "LabName": $0.labName,
             "Location": $0.location, "ImagePaths": $0.imagePaths] as [String: Any]
        }])
    }

    /// Loads the configuration and requires it to be valid (warnings are allowed).
    func load(sourceLocation: SourceLocation = #_sourceLocation) throws -> FactoryConfiguration {
        let snapshot = try InMemoryConfigSource(commit: commit, files: files).load()
        let configuration = ConfigurationLoader.load(snapshot)
        try #require(!configuration.diagnostics.hasErrors, "fixture configuration has errors: \(configuration.diagnostics.errors.map(\.message))",
                     sourceLocation: sourceLocation)
        return configuration
    }

    static func json(_ object: Any) -> String {
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    /// A golden-image template shaped like the original's samples (see Configuration/GoldenImages).
    static func template(osType: OSType = .windows, notes: String = "A golden image", artifacts: [String] = [],
                         osState: OSState? = nil) -> String {
        let gallery: [String: Any] = osType == .windows
            ? ["publisher": "MicrosoftWindowsServer", "offer": "WindowsServer", "sku": "2016-Datacenter", "osType": "Windows", "version": "latest"]
            : ["publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts-gen2", "osType": "Linux", "version": "latest"]
        var properties: [String: Any] = [
            "notes": notes,
            "galleryImageReference": gallery,
            "size": "[parameters('size')]",
            "userName": "[parameters('userName')]",
            "password": "[parameters('password')]",
        ]
        if !artifacts.isEmpty {
            properties["artifacts"] = artifacts.map {
                ["artifactId": "[resourceId('Microsoft.DevTestLab/labs/artifactSources/artifacts', parameters('labName'), 'public repo', '\($0)')]"]
            }
        }
        var root: [String: Any] = [
            "$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json",
            "contentVersion": "1.0.0.0",
            "parameters": [
                "newVMName": ["type": "string"], "labName": ["type": "string"], "size": ["type": "string"],
                "userName": ["type": "string"], "password": ["type": "securestring"],
            ],
            "resources": [[
                "apiVersion": "2018-10-15-preview",
                "type": "Microsoft.DevTestLab/labs/virtualmachines",
                "name": "[concat(parameters('labName'), '/', parameters('newVMName'))]",
                "location": "[resourceGroup().location]",
                "properties": properties,
            ] as [String: Any]],
        ]
        if let osState { root["metadata"] = ["imageFactory": ["osState": osState.rawValue]] }
        return json(root)
    }
}

// MARK: - Hand-built observed state for planner tests

/// Builders for inventories: the observed state the planner reads.
enum Observed {
    /// A fixed "now" for plans (image names get the suffix `Nov-22-2026`).
    static let now = Date(timeIntervalSince1970: 1_795_323_000)  // 2026-11-22T04:50:00Z
    static let today = "Nov-22-2026"

    static func factoryLab(_ settings: FactorySettings) -> Lab {
        let id = LabID(subscriptionId: settings.subscriptionId, resourceGroup: settings.resourceGroup, name: settings.factoryLab)
        return Lab(id: id, location: settings.location,
                   storageAccount: StorageAccountID(subscriptionId: id.subscriptionId, resourceGroup: id.resourceGroup, name: "afactorystorage"))
    }

    static func lab(for target: TargetLab, location: String? = nil) -> Lab {
        let id = LabID(subscriptionId: target.subscriptionId, resourceGroup: target.resourceGroup ?? "rg", name: target.labName)
        return Lab(id: id, location: location ?? target.location ?? "westeurope",
                   storageAccount: StorageAccountID(subscriptionId: id.subscriptionId, resourceGroup: id.resourceGroup,
                                                    name: "a" + target.labName.lowercased() + "storage"))
    }

    /// The inventory of a freshly set-up cloud: every lab exists and is empty.
    static func inventory(_ configuration: FactoryConfiguration) -> Inventory {
        Inventory(factory: factoryLab(configuration.settings), factoryVMs: [], factoryImages: [], records: [], factoryBlobs: [],
                  labs: configuration.labs.map { LabInventory(key: $0.key, lab: lab(for: $0), problem: nil, images: [], blobs: []) },
                  deployments: [], problems: [])
    }

    static func record(_ template: GoldenImageTemplate, name: String, at timestamp: Date, sha: String? = nil) -> VhdRecord {
        VhdRecord(imageName: name, imagePath: template.path, description: template.description, osType: template.osType,
                  vhdFileName: name + ".vhd", timestamp: timestamp, osState: template.osState, commit: "0123456789",
                  templateBlobSha: sha ?? template.blobSha, sizeBytes: 8 << 20, md5: "md5==", runId: "earlier")
    }

    static func image(_ name: String, in lab: Lab, path: String?, createdAt: Date, state: ProvisioningState = .succeeded) -> CustomImage {
        CustomImage(id: CustomImageID(lab: lab.id, name: name), provisioningState: state, osType: .windows, sysprep: true,
                    description: "", tags: path.map { [FactoryTag.imagePath: $0] } ?? ["Owner": "someone"], createdAt: createdAt,
                    vhd: nil)
    }

    static func blob(_ name: String, account: StorageAccountID, container: String = "imagefactoryvhds",
                     copyStatus: CopyStatus? = nil, md5: String? = "md5==") -> BlobProperties {
        BlobProperties(id: BlobID(container: ContainerID(account: account, name: container), name: name), contentLength: 8 << 20,
                       contentMD5: md5, lastModified: Date(timeIntervalSince1970: 1_700_000_000), copyStatus: copyStatus)
    }

    static func vm(_ name: String, in factory: Lab, tags: [String: String], provisioningState: ProvisioningState = .succeeded,
                   powerState: PowerState = .deallocated, artifacts: [ArtifactResult] = []) -> LabVirtualMachine {
        LabVirtualMachine(id: VirtualMachineID(lab: factory.id, name: name), provisioningState: provisioningState, powerState: powerState,
                          osType: .windows, tags: tags, artifacts: artifacts, createdAt: Date(timeIntervalSince1970: 1_700_000_000),
                          generalized: true)
    }

    /// Days before `now`, for timestamps.
    static func daysAgo(_ days: Double) -> Date { now.addingTimeInterval(-days * 86_400) }
}

extension Inventory {
    /// Adds a complete record: its `.json` and its `.vhd` in the factory container.
    mutating func addRecord(_ record: VhdRecord) {
        records.append(record)
        factoryBlobs.append(Observed.blob(record.vhdFileName, account: factory.storageAccount, copyStatus: .success))
        factoryBlobs.append(Observed.blob(record.imageName + ".json", account: factory.storageAccount))
    }

    mutating func addImage(_ image: CustomImage, toLab labName: String) {
        let i = labs.firstIndex { $0.lab?.id.name == labName }!
        labs[i].images.append(image)
    }

    func labInventory(_ labName: String) -> LabInventory { labs.first { $0.lab?.id.name == labName }! }
}

extension Plan {
    func actions(_ kind: ActionKind) -> [PlanAction] { actions.filter { $0.kind == kind } }
    func action(_ id: String) -> PlanAction? { actions.first { $0.id == id } }
    var ids: [String] { actions.map(\.id) }
}

// MARK: - A local cloud in a temporary directory

/// One line of the local cloud's `operations.jsonl` (the shared reader in TestSupport).
typealias OperationEntry = LoggedOperation

extension LoggedOperation {
    var startDate: Date { RecordTimestamp.parse(start)! }
    var endDate: Date { RecordTimestamp.parse(end)! }
}

/// A factory on a fresh local cloud: the factory lab, its container and every lab of Labs.json exist.
final class LocalFactory {
    let directory: URL
    /// The cloud under test (with its latency and faults).
    let cloud: LocalCloud
    /// A fault-free view of the same state directory, for setting up and checking.
    let observer: LocalCloud
    var configuration: FactoryConfiguration

    /// The clock both views of the cloud read (a `ManualClock` in tests of time).
    let clock: any FactoryClock

    init(_ fixture: FactoryFixture, latency: LatencyProfile = .instant, faults: String? = nil, clock: any FactoryClock = SystemClock(),
         disksHaveContentMD5: Bool = true) async throws {
        self.clock = clock
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("factory-engine-tests-" + UUID().uuidString)
        configuration = try fixture.load()
        // Set up on a fault-free view of the state directory, then open the cloud under test on it.
        let setup = try LocalCloud(stateDirectory: directory, settings: LocalCloudSettings(latency: latency, throttle: .off, faults: .none), clock: clock)
        let settings = configuration.settings
        let factory = try await setup.createLab(LabID(subscriptionId: settings.subscriptionId, resourceGroup: settings.resourceGroup,
                                                      name: settings.factoryLab), location: settings.location)
        for lab in configuration.labs {
            try await setup.createLab(LabID(subscriptionId: lab.subscriptionId, resourceGroup: lab.resourceGroup!, name: lab.labName),
                                      location: lab.location ?? settings.location)
        }
        try await setup.createContainer(ContainerID(account: factory.storageAccount, name: settings.container))
        observer = setup
        var cloudSettings = LocalCloudSettings(latency: latency, throttle: .off, faults: try faults.map(FaultSettings.parse) ?? .none)
        cloudSettings.disksHaveContentMD5 = disksHaveContentMD5
        cloud = try LocalCloud(stateDirectory: directory, settings: cloudSettings, clock: clock)
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    func runner(lockSeconds: Double = 60) -> FactoryRunner {
        FactoryRunner(backend: cloud, configuration: configuration, lockSeconds: lockSeconds)
    }

    /// Plans and executes every stage, as `imagefactory run` does.
    @discardableResult
    func run(_ runID: String) async throws -> RunSummary {
        let runner = runner()
        let (plan, _) = try await runner.plan()
        return try await runner.execute(plan, runID: runID, stages: Set(Stage.allCases), requireSamePlanBasis: false, events: { _ in })
    }

    var factoryLab: LabID {
        let s = configuration.settings
        return LabID(subscriptionId: s.subscriptionId, resourceGroup: s.resourceGroup, name: s.factoryLab)
    }

    func labID(_ name: String) -> LabID {
        if name == configuration.settings.factoryLab { return factoryLab }
        let lab = configuration.labs.first { $0.labName == name }!
        return LabID(subscriptionId: lab.subscriptionId, resourceGroup: lab.resourceGroup!, name: lab.labName)
    }

    func container(of labName: String) async throws -> ContainerID {
        ContainerID(account: try await observer.getLab(labID(labName)).storageAccount, name: configuration.settings.container)
    }

    func images(_ labName: String) async throws -> [CustomImage] {
        try await observer.listCustomImages(lab: labID(labName)).sorted { $0.id.name < $1.id.name }
    }

    func imageNames(_ labName: String) async throws -> [String] { try await images(labName).map(\.id.name) }

    func blobs(_ labName: String) async throws -> [String] {
        do {
            return try await observer.listBlobs(container: container(of: labName), prefix: nil).map(\.id.name).sorted()
        } catch let error as CloudError where error.code == "ContainerNotFound" {
            return []
        }
    }

    func records() async throws -> [VhdRecord] {
        try await FactoryRunner(backend: observer, configuration: configuration).inventory().records.sorted { $0.imageName < $1.imageName }
    }

    func operations() throws -> [OperationEntry] {
        try LoggedOperation.read(stateDirectory: directory)
    }

    /// Creates a custom image by hand (as a lab owner would in the portal), from a VHD in a container of its own.
    func addImageByHand(_ name: String, lab labName: String, tags: [String: String]) async throws {
        let lab = try await observer.getLab(labID(labName))
        let container = ContainerID(account: lab.storageAccount, name: "handmade")
        do { try await observer.createContainer(container) } catch let error as CloudError where error.code == "ContainerAlreadyExists" {}
        let vhd = BlobID(container: container, name: name + ".vhd")
        _ = try await observer.putPageBlob(vhd, data: Data(repeating: 7, count: 4096), metadata: [:])
        let handle = try await observer.createCustomImage(CustomImageRequest(
            id: CustomImageID(lab: lab.id, name: name), vhd: vhd, osType: .windows, sysprep: true,
            description: "made by hand", author: "someone", tags: tags))
        try await CloudClient(backend: observer).wait(for: handle, timeout: 30)
    }
}

extension RunSummary {
    func result(_ id: String) -> ActionResult? { results.first { $0.action.id == id } }
    func results(_ kind: ActionKind) -> [ActionResult] { results.filter { $0.action.kind == kind } }
}
