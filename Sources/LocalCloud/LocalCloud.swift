import FactoryModel
import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// The embedded local cloud: DevTest Labs, storage, custom images and galleries emulated in a
/// state directory (SQLite through GRDB for records, sparse files for blobs). It enforces
/// Azure's rules with Azure's error codes, takes time like Azure, throttles like ARM, injects
/// seeded faults, and logs every operation to `operations.jsonl`.
///
/// Crash safety: a blob's file is complete on disk before the record that points at it is
/// committed, and a copy counts as complete only from its completion moment on; a deleted
/// record goes first and its file after. Files with no record are swept on open.
public final class LocalCloud: CloudBackend {
    public let stateDirectory: URL
    public let settings: LocalCloudSettings
    let db: DatabasePool
    let throttle: WriteThrottle
    let faults: FaultInjector
    let log: OperationsLog
    let blobsDirectory: URL
    let imagesDirectory: URL
    /// The emulated service's time: when operations complete, leases expire, replication ends.
    /// Tests pass a `ManualClock` to move it by hand.
    public let clock: any FactoryClock
    /// Told when a request is held at `settings.holdAfter` (the CLI says so on standard error).
    let onHold: (@Sendable (String) -> Void)?

    /// Opens (creating if needed) the local cloud in a state directory.
    public init(stateDirectory: URL, settings: LocalCloudSettings, clock: any FactoryClock = SystemClock(),
                onHold: (@Sendable (String) -> Void)? = nil) throws {
        self.stateDirectory = stateDirectory
        self.settings = settings
        self.clock = clock
        self.onHold = onHold
        blobsDirectory = stateDirectory.appendingPathComponent("blobs")
        imagesDirectory = stateDirectory.appendingPathComponent("images")
        for dir in [stateDirectory, blobsDirectory, imagesDirectory] {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(30)
        db = try DatabasePool(path: stateDirectory.appendingPathComponent("cloud.sqlite").path, configuration: configuration)
        try db.write { try Database.migrate($0) }
        throttle = WriteThrottle(settings.throttle)
        faults = FaultInjector(settings.faults)
        log = OperationsLog(url: stateDirectory.appendingPathComponent("operations.jsonl"))
        try sweepOrphans()
        sweepDiskOrphans()
    }

    /// Removes files no record points at (left by a process killed between writing a file and committing its record).
    /// Only files older than a minute go, so another process's in-flight write is never touched.
    private func sweepOrphans() throws {
        let referenced: Set<String> = try db.read { db in
            var names = Set<String>()
            for blob in try db.allRecords("blob", as: BlobRecord.self) { names.insert(blob.file) }
            for image in try db.allRecords("image", as: ImageRecord.self) { if let f = image.file { names.insert(f) } }
            for version in try db.allRecords("imageversion", as: ImageVersionRecord.self) { if let f = version.file { names.insert(f) } }
            return names
        }
        let cutoff = Date().addingTimeInterval(-60)
        for dir in [blobsDirectory, imagesDirectory] {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? [] where !referenced.contains(name) {
                let url = dir.appendingPathComponent(name)
                let modified = (try? url.resourceValues(forKeys: [.contentModificationDateKey]).contentModificationDate) ?? .distantPast
                if modified < cutoff { try? FileManager.default.removeItem(at: url) }
            }
        }
    }

    // MARK: The request pipeline

    /// Runs one request: request latency, injected faults, write throttling, the body, and a log
    /// line; then, for tests of interruption, holds the request when it is `settings.holdAfter`.
    func perform<T: Sendable>(_ name: String, kind: OperationKind, write: Bool, subscription: String?, lab: String?, resource: String,
                              _ body: @Sendable () async throws -> T) async throws -> T {
        let value = try await performLogged(name, kind: kind, write: write, subscription: subscription, lab: lab, resource: resource, body)
        if let hold = settings.holdAfter, hold == name {
            onHold?(name)
            try await clock.sleep(seconds: 365 * 86_400)  // until the process is killed or the task cancelled
        }
        return value
    }

    private func performLogged<T: Sendable>(_ name: String, kind: OperationKind, write: Bool, subscription: String?, lab: String?, resource: String,
                                            _ body: @Sendable () async throws -> T) async throws -> T {
        let start = self.clock.now()
        var status = 200
        var result = "ok"
        defer {
            log.append(.init(start: OperationsLog.timestamp(start), end: OperationsLog.timestamp(self.clock.now()), kind: name,
                             subscription: subscription, lab: lab, resource: resource, result: result, status: status, write: write,
                             job: OperationContext.jobID, run: OperationContext.runID, pid: getpid()))
        }
        do {
            if settings.latency.request > 0 { try await clock.sleep(seconds: settings.latency.request) }
            if let rates = faults.rates(kind) {
                if await faults.roll(kind, resource: resource, fault: "timeout", rate: rates.timeout) {
                    try await clock.sleep(seconds: settings.faults.timeoutSeconds)
                    throw CloudError(status: 408, code: "RequestTimeout", message: "The request timed out (injected fault).")
                }
                if await faults.roll(kind, resource: resource, fault: "throttle", rate: rates.throttle) {
                    throw CloudError(status: 429, code: "TooManyRequests", message: "The request is being throttled (injected fault).", retryAfter: 0.05)
                }
                if await faults.roll(kind, resource: resource, fault: "transient", rate: rates.transient) {
                    throw CloudError(status: 503, code: "ServiceUnavailable", message: "The service is temporarily unavailable (injected fault).", retryAfter: 0.05)
                }
            }
            // ARM throttles management-plane writes per subscription; blob data-plane calls are not counted.
            if write, kind != .blobWrite, kind != .copy, let subscription {
                _ = try await throttle.take(subscription: subscription.lowercased(), now: clock.now())
            }
            return try await body()
        } catch let error as CloudError {
            status = error.status
            result = error.code
            throw error
        } catch {
            status = 499
            result = error is CancellationError ? "Canceled" : "\(error)"
            throw error
        }
    }

    func injected(_ kind: OperationKind, _ resource: String, _ fault: String) async -> Bool {
        guard let rates = faults.rates(kind) else { return false }
        let rate: Double
        switch fault {
        case "copyFailure": rate = rates.copyFailure
        case "artifactFailure": rate = rates.artifactFailure
        case "operationFailure": rate = rates.operationFailure
        default: rate = 0
        }
        return await faults.roll(kind, resource: resource, fault: fault, rate: rate)
    }

    func operation(_ db: Database, completesAt: Date, error: CloudError? = nil) throws -> OperationHandle {
        let id = UUID().uuidString.lowercased()
        try db.save("operation", id, parent: "", OperationRecord(id: id, completesAt: completesAt, error: error))
        return OperationHandle(id: id, retryAfter: max(0, completesAt.timeIntervalSince(self.clock.now())))
    }

    /// ARM's 404 for a resource that does not exist, in its own words.
    static func resourceNotFound(_ type: String, resourceGroup: String) -> CloudError {
        CloudError(status: 404, code: "ResourceNotFound", message: "The Resource '\(type)' under resource group '\(resourceGroup)' was not found.")
    }

    // MARK: Keys

    static func labKey(_ id: LabID) -> String { id.key }
    static func vmKey(_ id: VirtualMachineID) -> String { id.lab.key + "/" + id.name.lowercased() }
    static func containerKey(_ id: ContainerID) -> String { id.account.name.lowercased() + "/" + id.name }
    static func blobKey(_ id: BlobID) -> String { containerKey(id.container) + "/" + id.name }
    static func imageKey(_ id: CustomImageID) -> String { id.lab.key + "/" + id.name.lowercased() }
    static func rgKey(_ subscription: String, _ group: String) -> String { subscription.lowercased() + "/" + group.lowercased() }
    static func galleryKey(_ id: GalleryID) -> String { rgKey(id.subscriptionId, id.resourceGroup) + "/" + id.name.lowercased() }
    static func definitionKey(_ id: GalleryImageDefinitionID) -> String { galleryKey(id.gallery) + "/" + id.name.lowercased() }
    static func versionKey(_ id: GalleryImageVersionID) -> String { definitionKey(id.definition) + "/" + id.version }

    /// A lab's storage account name: lowercase letters and digits, at most 24 characters, unique per lab.
    public static func storageAccountName(for lab: LabID) -> String {
        let stem = String(lab.name.lowercased().filter { $0.isASCII && ($0.isLetter || $0.isNumber) }.prefix(12))
        return "a" + stem + String(format: "%08x", UInt32(truncatingIfNeeded: StableHash.fnv1a(lab.key)))
    }

    // MARK: Labs

    /// Creates a lab (the local cloud's stand-in for the portal or a lab ARM template). Idempotent.
    @discardableResult
    public func createLab(_ id: LabID, location: String) async throws -> Lab {
        if let error = AzureNameRules.subscriptionError(id.subscriptionId) ?? AzureNameRules.resourceGroupError(id.resourceGroup) { throw error }
        guard !id.name.isEmpty, id.name.count <= 50,
              id.name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" || $0 == "_") }) else {
            throw CloudError(status: 400, code: "InvalidResourceName",
                             message: "The lab name '\(id.name)' is invalid: use 1 to 50 letters, digits, '-' or '_'.")
        }
        let account = StorageAccountID(subscriptionId: id.subscriptionId, resourceGroup: id.resourceGroup, name: LocalCloud.storageAccountName(for: id))
        return try await perform("createLab", kind: .deploy, write: true, subscription: id.subscriptionId, lab: id.name, resource: id.resourceId) {
            try await self.db.write { db in
                if let existing = try db.record("lab", LocalCloud.labKey(id), as: LabRecord.self) {
                    return Lab(id: existing.id, location: existing.location, storageAccount: existing.storageAccount)
                }
                let record = LabRecord(id: id, location: Location.normalize(location), storageAccount: account, createdAt: self.clock.now())
                try db.save("lab", LocalCloud.labKey(id), parent: id.subscriptionId.lowercased(), record)
                return Lab(id: id, location: record.location, storageAccount: account)
            }
        }
    }

    public func listLabs(subscriptionId: String) async throws -> [Lab] {
        try await perform("listLabs", kind: .read, write: false, subscription: subscriptionId, lab: nil, resource: "/subscriptions/\(subscriptionId)") {
            try await self.db.read { db in
                try db.records("lab", parent: subscriptionId.lowercased(), as: LabRecord.self)
                    .map { Lab(id: $0.id, location: $0.location, storageAccount: $0.storageAccount) }
            }
        }
    }

    public func getLab(_ id: LabID) async throws -> Lab {
        try await perform("getLab", kind: .read, write: false, subscription: id.subscriptionId, lab: id.name, resource: id.resourceId) {
            try await self.db.read { db in try self.lab(db, id) }
        }
    }

    func lab(_ db: Database, _ id: LabID) throws -> Lab {
        guard let r = try db.record("lab", LocalCloud.labKey(id), as: LabRecord.self) else {
            throw LocalCloud.resourceNotFound("Microsoft.DevTestLab/labs/\(id.name)", resourceGroup: id.resourceGroup)
        }
        return Lab(id: r.id, location: r.location, storageAccount: r.storageAccount)
    }

    // MARK: Virtual machines

    public func deployVirtualMachine(_ request: VMDeploymentRequest) async throws -> OperationHandle {
        let id = request.vm
        let template = try Self.templateVM(request.template)
        let osType = template.osType
        if let error = AzureNameRules.virtualMachineNameError(id.name, osType: osType) { throw error }
        var planned: [PlannedArtifact] = []
        for artifact in request.artifacts {
            var failure: String?
            if artifact.name.lowercased().hasSuffix("-fails") {
                failure = "Artifact '\(artifact.name)' failed: the script exited with code 1."
            } else if await injected(.deploy, id.resourceId + "/" + artifact.name, "artifactFailure") {
                failure = "Artifact '\(artifact.name)' failed: the extension returned a non-zero exit code (injected fault)."
            }
            planned.append(PlannedArtifact(name: artifact.name, parameters: artifact.parameters, failure: failure))
        }
        let provisioningFails = await injected(.deploy, id.resourceId, "operationFailure")
        let plannedArtifacts = planned
        let latency = settings.latency
        let maxDeployments = settings.maxDeploymentsPerResourceGroup
        return try await perform("deployVirtualMachine", kind: .deploy, write: true, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.resourceId) {
            try await self.db.write { db in
                _ = try self.lab(db, id.lab)
                let vmKey = LocalCloud.vmKey(id)
                if try db.record("vm", vmKey, as: VMRecord.self) != nil {
                    throw CloudError(status: 409, code: "Conflict", message: "A virtual machine named '\(id.name)' already exists in lab '\(id.lab.name)'.")
                }
                let rg = LocalCloud.rgKey(id.lab.subscriptionId, id.lab.resourceGroup)
                let deploymentKey = rg + "/" + request.deploymentName.lowercased()
                if try db.record("deployment", deploymentKey, as: DeploymentRecord.self) == nil,
                   try db.count("deployment", parent: rg) >= maxDeployments {
                    throw CloudError(status: 409, code: "DeploymentQuotaExceeded",
                                     message: "Creating the deployment '\(request.deploymentName)' would exceed the quota of '\(maxDeployments)'. The current deployment count is '\(maxDeployments)'. Please delete some deployments before creating a new one.")
                }
                let now = self.clock.now()
                let readyAt = now.addingTimeInterval(latency.deployment + latency.artifact * Double(plannedArtifacts.count))
                let anyFailure = plannedArtifacts.contains { $0.failure != nil } || provisioningFails
                let generalizes = !anyFailure && plannedArtifacts.last.map { ["windows-sysprep", "linux-deprovision"].contains($0.name.lowercased()) } == true
                var events = [PowerEvent(at: readyAt, state: "Running")]
                var generalizedAt: Date?
                if generalizes {
                    // Sysprep / deprovision shut the VM down, and DevTest Labs deallocates it.
                    events.append(PowerEvent(at: readyAt.addingTimeInterval(latency.shutdown * 0.5), state: "Stopping"))
                    generalizedAt = readyAt.addingTimeInterval(latency.shutdown)
                    events.append(PowerEvent(at: generalizedAt!, state: "Deallocated"))
                }
                let record = VMRecord(
                    id: id, osType: osType, tags: request.tags, baseImage: template.baseImage, artifacts: plannedArtifacts, createdAt: now,
                    readyAt: readyAt, provisioningFailure: provisioningFails ? "The deployment failed: InternalServerError (injected fault)." : nil,
                    powerEvents: events, generalizedAt: generalizedAt, deploymentName: request.deploymentName)
                try db.save("vm", vmKey, parent: id.lab.key, record)
                try db.save("deployment", deploymentKey, parent: rg, DeploymentRecord(
                    subscriptionId: id.lab.subscriptionId, resourceGroup: id.lab.resourceGroup, name: request.deploymentName,
                    startedAt: now, completesAt: readyAt, failed: anyFailure))
                let error = anyFailure ? CloudError(status: 200, code: "DeploymentFailed",
                                                    message: "At least one resource deployment operation failed.") : nil
                return try self.operation(db, completesAt: readyAt, error: error)
            }
        }
    }

    struct TemplateVM {
        var osType: OSType
        var baseImage: String
    }

    /// Reads the lab VM resource of a template the way ARM would, rejecting what ARM rejects.
    static func templateVM(_ data: Data) throws -> TemplateVM {
        guard let text = JSONText.decodeText(data), let root = try? JSONText.parse(text) as? [String: Any],
              let resources = JSONText.value(root, "resources") as? [Any] else {
            throw CloudError(status: 400, code: "InvalidTemplate", message: "Deployment template validation failed: the template is not valid JSON with a resources array.")
        }
        for case let resource as [String: Any] in resources {
            guard (JSONText.value(resource, "type") as? String)?.lowercased() == "microsoft.devtestlab/labs/virtualmachines",
                  let properties = JSONText.value(resource, "properties") as? [String: Any] else { continue }
            let gallery = JSONText.value(properties, "galleryImageReference") as? [String: Any] ?? [:]
            let os = (JSONText.value(gallery, "osType") as? String) ?? (JSONText.value(properties, "osType") as? String) ?? ""
            guard let osType = OSType(caseInsensitive: os) else {
                throw CloudError(status: 400, code: "InvalidTemplate", message: "Deployment template validation failed: the virtual machine has no osType.")
            }
            let base = ["publisher", "offer", "sku", "version"].map { (JSONText.value(gallery, $0) as? String) ?? "" }.joined(separator: ":")
            return TemplateVM(osType: osType, baseImage: base)
        }
        throw CloudError(status: 400, code: "InvalidTemplate", message: "Deployment template validation failed: no Microsoft.DevTestLab/labs/virtualmachines resource.")
    }

    public func getVirtualMachine(_ id: VirtualMachineID) async throws -> LabVirtualMachine {
        try await perform("getVirtualMachine", kind: .read, write: false, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.resourceId) {
            try await self.db.read { db in try self.vm(db, id).view(at: self.clock.now()) }
        }
    }

    func vm(_ db: Database, _ id: VirtualMachineID) throws -> VMRecord {
        guard let record = try db.record("vm", LocalCloud.vmKey(id), as: VMRecord.self) else {
            throw LocalCloud.resourceNotFound("Microsoft.DevTestLab/labs/\(id.lab.name)/virtualmachines/\(id.name)", resourceGroup: id.lab.resourceGroup)
        }
        return record
    }

    public func listVirtualMachines(lab: LabID) async throws -> [LabVirtualMachine] {
        try await perform("listVirtualMachines", kind: .read, write: false, subscription: lab.subscriptionId, lab: lab.name, resource: lab.resourceId + "/virtualmachines") {
            try await self.db.read { db in
                _ = try self.lab(db, lab)
                let now = self.clock.now()
                return try db.records("vm", parent: lab.key, as: VMRecord.self).map { $0.view(at: now) }
            }
        }
    }

    public func updateVirtualMachineTags(_ id: VirtualMachineID, tags: [String: String]) async throws {
        try await perform("updateVirtualMachineTags", kind: .vmAction, write: true, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.resourceId) {
            try await self.db.write { db in
                var record = try self.vm(db, id)
                record.tags = tags
                try db.save("vm", LocalCloud.vmKey(id), parent: id.lab.key, record)
            }
        }
    }

    public func stopVirtualMachine(_ id: VirtualMachineID) async throws -> OperationHandle {
        let shutdown = settings.latency.shutdown
        return try await perform("stopVirtualMachine", kind: .vmAction, write: true, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.resourceId) {
            try await self.db.write { db in
                var record = try self.vm(db, id)
                let now = self.clock.now()
                let view = record.view(at: now)
                guard view.provisioningState == "Succeeded" else {
                    throw CloudError(status: 409, code: "Conflict", message: "The virtual machine '\(id.name)' is \(view.provisioningState.rawValue.lowercased()) and cannot be stopped now.")
                }
                if view.powerState == "Deallocated" { return try self.operation(db, completesAt: now) }
                let done = max(now, record.powerEvents.map(\.at).max() ?? now).addingTimeInterval(shutdown)
                record.powerEvents.append(PowerEvent(at: now, state: "Deallocating"))
                record.powerEvents.append(PowerEvent(at: done, state: "Deallocated"))
                try db.save("vm", LocalCloud.vmKey(id), parent: id.lab.key, record)
                return try self.operation(db, completesAt: done)
            }
        }
    }

    public func startVirtualMachine(_ id: VirtualMachineID) async throws -> OperationHandle {
        let delay = settings.latency.shutdown
        return try await perform("startVirtualMachine", kind: .vmAction, write: true, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.resourceId) {
            try await self.db.write { db in
                var record = try self.vm(db, id)
                let now = self.clock.now()
                if record.view(at: now).generalized {
                    throw CloudError(status: 409, code: "OperationNotAllowed",
                                     message: "Operation 'start' is not allowed on VM '\(id.name)' since the VM is generalized.")
                }
                try self.checkNoActiveDiskAccess(db, id)
                let done = now.addingTimeInterval(delay)
                record.powerEvents.append(PowerEvent(at: now, state: "Starting"))
                record.powerEvents.append(PowerEvent(at: done, state: "Running"))
                try db.save("vm", LocalCloud.vmKey(id), parent: id.lab.key, record)
                return try self.operation(db, completesAt: done)
            }
        }
    }

    public func deleteVirtualMachine(_ id: VirtualMachineID) async throws -> OperationHandle {
        let delay = settings.latency.delete
        return try await perform("deleteVirtualMachine", kind: .vmDelete, write: true, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.resourceId) {
            try await self.db.write { db in
                _ = try self.vm(db, id)
                try db.remove("vm", LocalCloud.vmKey(id))
                try self.removeDiskAccess(db, id)  // the VM's OS disk goes with it, and any SAS to it
                return try self.operation(db, completesAt: self.clock.now().addingTimeInterval(delay))
            }
        }
    }

    /// Grants read access to the VM's OS disk and starts Copy Blob from its SAS, as the original
    /// factory exported disks. The access stays until `endDiskExport`: revoked earlier, the copy fails.
    public func beginDiskExport(_ id: VirtualMachineID, to destination: BlobID, accessSeconds: Double) async throws -> DiskExport {
        let (_, grant) = try await grantDiskAccess(id, duration: accessSeconds)
        do {
            let started = try await startBlobCopy(fromDiskAccess: grant.id, signature: grant.signature,
                                                  sourceURL: id.resourceId + "/osdisk?sas", to: destination, faultKind: .export)
            return DiskExport(vm: id, destination: destination, started: started)
        } catch {
            _ = try? await revokeDiskAccess(id)
            throw error
        }
    }

    public func endDiskExport(_ export: DiskExport) async throws -> OperationHandle {
        try await revokeDiskAccess(export.vm)
    }

    // MARK: Storage

    func container(_ db: Database, _ id: ContainerID) throws -> ContainerRecord {
        guard let record = try db.record("container", LocalCloud.containerKey(id), as: ContainerRecord.self) else {
            throw CloudError(status: 404, code: "ContainerNotFound", message: "The specified container does not exist.")
        }
        return record
    }

    static func validContainerName(_ name: String) -> Bool {
        (3...63).contains(name.count) && name.allSatisfy { ($0.isLowercase && $0.isASCII) || $0.isNumber || $0 == "-" }
            && !name.hasPrefix("-") && !name.hasSuffix("-") && !name.contains("--")
    }

    /// Storage accounts exist with their labs; a request to an unknown account fails like DNS would.
    func checkAccount(_ db: Database, _ account: StorageAccountID) throws {
        let labs = try db.records("lab", parent: account.subscriptionId.lowercased(), as: LabRecord.self)
        guard labs.contains(where: { $0.storageAccount.name.lowercased() == account.name.lowercased() }) else {
            throw CloudError(status: 404, code: "StorageAccountNotFound", message: "The storage account '\(account.name)' was not found.")
        }
    }

    public func createContainer(_ id: ContainerID) async throws {
        guard LocalCloud.validContainerName(id.name) else {
            throw CloudError(status: 400, code: "InvalidResourceName", message: "The specifed resource name contains invalid characters.")
        }
        try await perform("createContainer", kind: .blobWrite, write: true, subscription: id.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.write { db in
                try self.checkAccount(db, id.account)
                if try db.record("container", LocalCloud.containerKey(id), as: ContainerRecord.self) != nil {
                    throw CloudError(status: 409, code: "ContainerAlreadyExists", message: "The specified container already exists.")
                }
                try db.save("container", LocalCloud.containerKey(id), parent: id.account.name.lowercased(), ContainerRecord(id: id, createdAt: self.clock.now()))
            }
        }
    }

    public func deleteContainer(_ id: ContainerID) async throws {
        let files = try await perform("deleteContainer", kind: .blobWrite, write: true, subscription: id.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.write { db -> [String] in
                _ = try self.container(db, id)
                let blobs = try db.records("blob", parent: LocalCloud.containerKey(id), as: BlobRecord.self)
                for blob in blobs { try db.remove("blob", LocalCloud.blobKey(blob.id)) }
                try db.remove("container", LocalCloud.containerKey(id))
                return blobs.map(\.file)
            }
        }
        for file in files { try? FileManager.default.removeItem(at: blobsDirectory.appendingPathComponent(file)) }
    }

    public func listContainers(account: StorageAccountID) async throws -> [String] {
        try await perform("listContainers", kind: .read, write: false, subscription: account.subscriptionId, lab: nil, resource: account.name) {
            try await self.db.read { db in
                try self.checkAccount(db, account)
                return try db.records("container", parent: account.name.lowercased(), as: ContainerRecord.self).map(\.id.name)
            }
        }
    }

    /// Inserts or replaces a blob record, removing the file of the blob it replaces (after commit).
    func replaceBlob(_ db: Database, _ blob: BlobRecord) throws {
        let key = LocalCloud.blobKey(blob.id)
        if let old = try db.record("blob", key, as: BlobRecord.self), old.file != blob.file {
            let oldURL = blobsDirectory.appendingPathComponent(old.file)
            db.afterNextTransaction { _ in try? FileManager.default.removeItem(at: oldURL) }
        }
        try db.save("blob", key, parent: LocalCloud.containerKey(blob.id.container), blob)
    }

    public func putBlob(_ id: BlobID, data: Data, metadata: [String: String]) async throws -> BlobProperties {
        try await perform("putBlob", kind: .blobWrite, write: true, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            let file = UUID().uuidString.lowercased()
            let url = self.blobsDirectory.appendingPathComponent(file)
            try await self.db.read { db in _ = try self.container(db, id.container) }
            try data.write(to: url)
            let md5 = Data(Insecure_MD5(data)).base64EncodedString()
            let record = BlobRecord(id: id, file: file, size: Int64(data.count), md5: md5, metadata: metadata, lastModified: self.clock.now(), copy: nil)
            return try await self.commit(file: url) { db in
                _ = try self.container(db, id.container)
                try self.checkNoLease(db, id)
                try self.replaceBlob(db, record)
                return record.properties(at: self.clock.now())
            }
        }
    }

    func blob(_ db: Database, _ id: BlobID) throws -> BlobRecord {
        guard let record = try db.record("blob", LocalCloud.blobKey(id), as: BlobRecord.self) else {
            _ = try container(db, id.container)
            throw CloudError(status: 404, code: "BlobNotFound", message: "The specified blob does not exist.")
        }
        return record
    }

    public func getBlob(_ id: BlobID) async throws -> Data {
        try await perform("getBlob", kind: .read, write: false, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            let record = try await self.db.read { db in try self.blob(db, id) }
            guard record.isComplete(at: self.clock.now()) else {
                throw CloudError(status: 409, code: "PendingCopyOperation", message: "There is currently a pending copy operation.")
            }
            return try Data(contentsOf: self.blobsDirectory.appendingPathComponent(record.file))
        }
    }

    public func getBlobProperties(_ id: BlobID) async throws -> BlobProperties {
        try await perform("getBlobProperties", kind: .read, write: false, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.read { db in try self.blob(db, id).properties(at: self.clock.now()) }
        }
    }

    public func listBlobs(container: ContainerID, prefix: String?) async throws -> [BlobProperties] {
        try await perform("listBlobs", kind: .read, write: false, subscription: container.account.subscriptionId, lab: nil, resource: container.description) {
            try await self.db.read { db in
                _ = try self.container(db, container)
                let now = self.clock.now()
                return try db.records("blob", parent: LocalCloud.containerKey(container), as: BlobRecord.self)
                    .filter { prefix == nil || $0.id.name.hasPrefix(prefix!) }
                    .map { $0.properties(at: now) }
            }
        }
    }

    public func deleteBlob(_ id: BlobID) async throws {
        let file = try await perform("deleteBlob", kind: .blobWrite, write: true, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.write { db -> String in
                let record = try self.blob(db, id)
                try self.checkNoLease(db, id)
                try db.remove("blob", LocalCloud.blobKey(id))
                return record.file
            }
        }
        try? FileManager.default.removeItem(at: blobsDirectory.appendingPathComponent(file))
    }

    public func startBlobCopy(from source: BlobID, to destination: BlobID) async throws -> BlobProperties {
        let fails = await injected(.copy, destination.description, "copyFailure")
        return try await perform("startBlobCopy", kind: .copy, write: true, subscription: destination.container.account.subscriptionId, lab: nil, resource: destination.description) {
            let sourceRecord = try await self.db.read { db -> BlobRecord in
                let record = try self.blob(db, source)
                _ = try self.container(db, destination.container)
                return record
            }
            let now = self.clock.now()
            guard sourceRecord.isComplete(at: now) else {
                throw CloudError(status: 409, code: "PendingCopyOperation", message: "There is currently a pending copy operation on the source blob.")
            }
            return try await self.copy(file: self.blobsDirectory.appendingPathComponent(sourceRecord.file), sourceURL: source.url,
                                       size: sourceRecord.size, md5: sourceRecord.md5, metadata: sourceRecord.metadata,
                                       to: destination, suffix: source.name.hasSuffix(".vhd") ? ".vhd" : "", fails: fails, at: now)
        }
    }

    /// The core of Copy Blob, whatever the source (a blob, a disk's SAS): the destination gets its
    /// own sparse copy of the bytes at once (half of them when the copy is to fail part-way), and
    /// reads as pending until the latency profile says the copy completes. As Azure, a destination
    /// with a copy still pending, or under a lease, cannot be overwritten.
    func copy(file sourceFile: URL, sourceURL: String, size: Int64, md5: String?, metadata: [String: String],
              to destination: BlobID, suffix: String, fails: Bool, at now: Date, sourceDiskAccess: String? = nil) async throws -> BlobProperties {
        let latency = settings.latency
        let file = UUID().uuidString.lowercased() + suffix
        let url = blobsDirectory.appendingPathComponent(file)
        let dataBytes = SparseFile.allocatedBytes(sourceFile)
        let copied = try SparseFile.copy(sourceFile, to: url, limit: fails ? max(0, dataBytes / 2) : nil)
        let duration = latency.copyBase + (latency.copyBytesPerSecond > 0 ? Double(max(copied, dataBytes)) / latency.copyBytesPerSecond : 0)
        let copy = CopyState(status: .pending, completesAt: now.addingTimeInterval(duration), source: sourceURL,
                             failure: fails ? "500 InternalError: the copy failed part-way after \(copied) bytes (injected fault)." : nil,
                             totalBytes: size, sourceDiskAccess: sourceDiskAccess)
        let record = BlobRecord(id: destination, file: file, size: size, md5: md5, metadata: metadata, lastModified: now, copy: copy)
        return try await commit(file: url) { db in
            if let current = try db.record("blob", LocalCloud.blobKey(destination), as: BlobRecord.self),
               current.properties(at: self.clock.now()).copyStatus == .pending {
                throw CloudError(status: 409, code: "PendingCopyOperation", message: "There is currently a pending copy operation.")
            }
            try self.checkNoLease(db, destination)
            try self.replaceBlob(db, record)
            return record.properties(at: now)
        }
    }

    /// Commits the record of a file already written in full (crash safety: the file first, then
    /// the record that points to it); the file goes again if the record is not committed.
    func commit<T: Sendable>(file url: URL, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await db.write(body)
        } catch {
            try? FileManager.default.removeItem(at: url)
            throw error
        }
    }

    public func abortBlobCopy(_ id: BlobID) async throws {
        try await perform("abortBlobCopy", kind: .blobWrite, write: true, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.write { db in
                var record = try self.blob(db, id)
                guard var copy = record.copy, record.properties(at: self.clock.now()).copyStatus == .pending else {
                    throw CloudError(status: 409, code: "NoPendingCopyOperation", message: "There is currently no pending copy operation.")
                }
                copy.status = .aborted
                record.copy = copy
                record.md5 = nil
                try db.save("blob", LocalCloud.blobKey(id), parent: LocalCloud.containerKey(id.container), record)
            }
        }
    }

    public func acquireLease(_ id: BlobID, duration: Double, proposedLeaseID: String) async throws -> String {
        // Azure allows 15 to 60 seconds (or infinite); the quicker profiles accept shorter leases so tests need not wait.
        guard duration == -1 || (15...60).contains(duration) || (settings.latency.name != "realistic" && duration > 0) else {
            throw CloudError(status: 400, code: "InvalidHeaderValue", message: "The lease duration must be 15 to 60 seconds, or -1 for infinite.")
        }
        try Self.checkLeaseIDFormat(proposedLeaseID, header: "x-ms-proposed-lease-id")
        return try await perform("acquireLease", kind: .blobWrite, write: true, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.write { db in
                var record = try self.blob(db, id)
                let now = self.clock.now()
                if let lease = record.lease, lease.expiresAt > now, lease.id != proposedLeaseID {
                    throw CloudError(status: 409, code: "LeaseAlreadyPresent", message: "There is already a lease present.")
                }
                record.lease = BlobRecord.Lease(id: proposedLeaseID, expiresAt: duration < 0 ? .distantFuture : now.addingTimeInterval(duration), duration: duration)
                try db.save("blob", LocalCloud.blobKey(id), parent: LocalCloud.containerKey(id.container), record)
                return proposedLeaseID
            }
        }
    }

    public func renewLease(_ id: BlobID, leaseID: String) async throws {
        try Self.checkLeaseIDFormat(leaseID, header: "x-ms-lease-id")
        try await perform("renewLease", kind: .blobWrite, write: true, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.write { db in
                var record = try self.blob(db, id)
                guard var lease = record.lease, lease.id == leaseID else {
                    throw CloudError(status: 409, code: "LeaseIdMismatchWithLeaseOperation", message: "The lease ID specified did not match the lease ID for the blob.")
                }
                if lease.expiresAt != .distantFuture {
                    lease.expiresAt = self.clock.now().addingTimeInterval(lease.duration ?? 60)
                }
                record.lease = lease
                try db.save("blob", LocalCloud.blobKey(id), parent: LocalCloud.containerKey(id.container), record)
            }
        }
    }

    public func releaseLease(_ id: BlobID, leaseID: String) async throws {
        try Self.checkLeaseIDFormat(leaseID, header: "x-ms-lease-id")
        try await perform("releaseLease", kind: .blobWrite, write: true, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.write { db in
                var record = try self.blob(db, id)
                guard let lease = record.lease, lease.id == leaseID else {
                    throw CloudError(status: 409, code: "LeaseIdMismatchWithLeaseOperation", message: "The lease ID specified did not match the lease ID for the blob.")
                }
                _ = lease
                record.lease = nil
                try db.save("blob", LocalCloud.blobKey(id), parent: LocalCloud.containerKey(id.container), record)
            }
        }
    }

    /// Blob storage takes only GUIDs as lease ids (`x-ms-proposed-lease-id`, `x-ms-lease-id`) and
    /// answers anything else with 400 InvalidHeaderValue. Checked here with the emulator's own code.
    static func checkLeaseIDFormat(_ value: String, header: String) throws {
        let hex = Set("0123456789abcdefABCDEF")
        let groups = value.split(separator: "-", omittingEmptySubsequences: false)
        let valid = groups.map(\.count) == [8, 4, 4, 4, 12] && groups.allSatisfy { $0.allSatisfy { hex.contains($0) } }
        guard valid else {
            throw CloudError(status: 400, code: "InvalidHeaderValue",
                             message: "The value for one of the HTTP headers is not in the correct format. Header: \(header), value: \(value).")
        }
    }

    /// A blob under an active lease cannot be overwritten or deleted without the lease id.
    func checkNoLease(_ db: Database, _ id: BlobID) throws {
        if let record = try db.record("blob", LocalCloud.blobKey(id), as: BlobRecord.self), let lease = record.lease, lease.expiresAt > self.clock.now() {
            throw CloudError(status: 412, code: "LeaseIdMissing", message: "There is currently a lease on the blob and no lease ID was specified in the request.")
        }
    }

    // MARK: Custom images

    public func createCustomImage(_ request: CustomImageRequest) async throws -> OperationHandle {
        let id = request.id
        let delay = settings.latency.customImage
        let fails = await injected(.customImage, id.description, "operationFailure")
        return try await perform("createCustomImage", kind: .customImage, write: true, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.lab.resourceId + "/customimages/" + id.name) {
            let now = self.clock.now()
            let (lab, blob, existing) = try await self.db.read { db in
                (try self.lab(db, id.lab), try? self.blob(db, request.vhd), try db.record("image", LocalCloud.imageKey(id), as: ImageRecord.self))
            }
            if let existing {
                if existing.vhd == request.vhd.url && existing.tags == request.tags {
                    return .completed  // an idempotent retry of the same PUT
                }
                throw CloudError(status: 409, code: "Conflict", message: "A custom image named '\(id.name)' already exists in lab '\(id.lab.name)'.")
            }
            guard request.vhd.container.account.name.lowercased() == lab.storageAccount.name.lowercased() else {
                throw CloudError(status: 400, code: "InvalidVhdLocation",
                                 message: "The VHD '\(request.vhd.url)' must be in the lab's storage account '\(lab.storageAccount.name)'.")
            }
            guard let blob, blob.isComplete(at: now) else {
                throw CloudError(status: 400, code: "InvalidVhd", message: "The VHD '\(request.vhd.url)' does not exist or its copy is not complete.")
            }
            // The image keeps its own copy of the disk (a hard link: free, and the source blob may be deleted).
            let file = UUID().uuidString.lowercased() + ".vhd"
            let target = self.imagesDirectory.appendingPathComponent(file)
            if link(self.blobsDirectory.appendingPathComponent(blob.file).path, target.path) != 0 {
                try SparseFile.copy(self.blobsDirectory.appendingPathComponent(blob.file), to: target)
            }
            let readyAt = now.addingTimeInterval(delay)
            let record = ImageRecord(id: id, osType: request.osType, sysprep: request.sysprep, description: request.description,
                                     author: request.author, tags: request.tags, createdAt: now, readyAt: readyAt,
                                     failure: fails ? "The custom image creation failed: InternalServerError (injected fault)." : nil,
                                     vhd: request.vhd.url, file: file, md5: blob.md5)
            return try await self.commit(file: target) { db in
                if try db.record("image", LocalCloud.imageKey(id), as: ImageRecord.self) != nil {
                    throw CloudError(status: 409, code: "Conflict", message: "A custom image named '\(id.name)' already exists in lab '\(id.lab.name)'.")
                }
                try db.save("image", LocalCloud.imageKey(id), parent: id.lab.key, record)
                let error = record.failure.map { CloudError(status: 200, code: "InternalServerError", message: $0) }
                return try self.operation(db, completesAt: readyAt, error: error)
            }
        }
    }

    public func getCustomImage(_ id: CustomImageID) async throws -> CustomImage {
        try await perform("getCustomImage", kind: .read, write: false, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.lab.resourceId + "/customimages/" + id.name) {
            try await self.db.read { db in try self.image(db, id).view(at: self.clock.now()) }
        }
    }

    func image(_ db: Database, _ id: CustomImageID) throws -> ImageRecord {
        guard let record = try db.record("image", LocalCloud.imageKey(id), as: ImageRecord.self) else {
            throw LocalCloud.resourceNotFound("Microsoft.DevTestLab/labs/\(id.lab.name)/customimages/\(id.name)", resourceGroup: id.lab.resourceGroup)
        }
        return record
    }

    public func listCustomImages(lab: LabID) async throws -> [CustomImage] {
        try await perform("listCustomImages", kind: .read, write: false, subscription: lab.subscriptionId, lab: lab.name, resource: lab.resourceId + "/customimages") {
            try await self.db.read { db in
                _ = try self.lab(db, lab)
                let now = self.clock.now()
                return try db.records("image", parent: lab.key, as: ImageRecord.self).map { $0.view(at: now) }
            }
        }
    }

    public func deleteCustomImage(_ id: CustomImageID) async throws -> OperationHandle {
        let delay = settings.latency.delete
        let (handle, file) = try await perform("deleteCustomImage", kind: .imageDelete, write: true, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.lab.resourceId + "/customimages/" + id.name) {
            try await self.db.write { db -> (OperationHandle, String?) in
                let record = try self.image(db, id)
                try db.remove("image", LocalCloud.imageKey(id))
                return (try self.operation(db, completesAt: self.clock.now().addingTimeInterval(delay)), record.file)
            }
        }
        if let file { try? FileManager.default.removeItem(at: imagesDirectory.appendingPathComponent(file)) }
        return handle
    }

    /// The file holding a custom image's disk, so tests can prove what reached a lab byte for byte.
    public func customImageFile(_ id: CustomImageID) async throws -> URL? {
        try await db.read { db in try db.record("image", LocalCloud.imageKey(id), as: ImageRecord.self)?.file }
            .map { imagesDirectory.appendingPathComponent($0) }
    }

    /// The file holding a blob's bytes.
    public func blobFile(_ id: BlobID) async throws -> URL {
        try await db.read { db in self.blobsDirectory.appendingPathComponent(try self.blob(db, id).file) }
    }

    // MARK: Deployments

    public func listDeployments(subscriptionId: String, resourceGroup: String) async throws -> [Deployment] {
        try await perform("listDeployments", kind: .read, write: false, subscription: subscriptionId, lab: nil, resource: "/subscriptions/\(subscriptionId)/resourceGroups/\(resourceGroup)/deployments") {
            try await self.db.read { db in
                let now = self.clock.now()
                return try db.records("deployment", parent: LocalCloud.rgKey(subscriptionId, resourceGroup), as: DeploymentRecord.self).map { $0.view(at: now) }
            }
        }
    }

    public func deleteDeployment(subscriptionId: String, resourceGroup: String, name: String) async throws {
        try await perform("deleteDeployment", kind: .deployment, write: true, subscription: subscriptionId, lab: nil, resource: "/subscriptions/\(subscriptionId)/resourceGroups/\(resourceGroup)/deployments/\(name)") {
            try await self.db.write { db in
                let key = LocalCloud.rgKey(subscriptionId, resourceGroup) + "/" + name.lowercased()
                guard let record = try db.record("deployment", key, as: DeploymentRecord.self) else {
                    throw CloudError(status: 404, code: "DeploymentNotFound", message: "Deployment '\(name)' could not be found.")
                }
                if record.view(at: self.clock.now()).provisioningState == "Running" {
                    throw CloudError(status: 409, code: "DeploymentActive", message: "The deployment '\(name)' is still running and cannot be deleted.")
                }
                try db.remove("deployment", key)
            }
        }
    }

    // MARK: Operations

    public func pollOperation(_ handle: OperationHandle) async throws -> OperationStatus {
        guard let id = handle.id else { return .succeeded }
        return try await perform("pollOperation", kind: .read, write: false, subscription: nil, lab: nil, resource: "operations/" + id) {
            guard let record = try await self.db.read({ db in try db.record("operation", id, as: OperationRecord.self) }) else {
                throw CloudError(status: 404, code: "OperationNotFound", message: "The operation '\(id)' was not found.")
            }
            let now = self.clock.now()
            if now < record.completesAt { return .inProgress(retryAfter: max(0.01, record.completesAt.timeIntervalSince(now))) }
            if let error = record.error { return .failed(error) }
            return .succeeded
        }
    }
}

/// MD5 of small in-memory blobs (Content-MD5 on Put Blob).
func Insecure_MD5(_ data: Data) -> [UInt8] {
    var hasher = CryptoMD5()
    hasher.update(data)
    return hasher.finalize()
}
