import FactoryModel
import Foundation

/// What happened to one action.
public struct ActionResult: Codable, Sendable, Equatable {
    public enum Outcome: String, Codable, Sendable { case succeeded, failed, skipped }
    public var action: PlanAction
    public var outcome: Outcome
    public var message: String?
    public var start: Date
    public var end: Date
    public var duration: Double { end.timeIntervalSince(start) }
}

/// A run's events, for progress displays and logs (the library never prints).
public enum FactoryEvent: Sendable {
    case stageStarted(Stage, actions: Int)
    case actionStarted(PlanAction)
    case actionFinished(ActionResult)
    case stageFinished(Stage, succeeded: Int, failed: Int, skipped: Int)
    case note(String)
    /// A secret the run made (a VM password): CI renderers register it for masking, never print it elsewhere.
    case secret(String)
}

/// The outcome of a run: every action's result and the problems found while planning.
public struct RunSummary: Codable, Sendable {
    public var runID: String
    public var commit: String?
    public var results: [ActionResult]
    public var diagnostics: [Diagnostic]
    public var failed: [ActionResult] { results.filter { $0.outcome == .failed } }
    public var succeeded: Bool { failed.isEmpty && !diagnostics.hasErrors }
}

public struct ExecutionOptions: Sendable {
    public var runID: String
    public var stages: Set<Stage>
    public var timeoutSeconds: Double
    public var maxConcurrentJobs: Int

    public init(runID: String, stages: Set<Stage> = Set(Stage.allCases), timeoutSeconds: Double, maxConcurrentJobs: Int) {
        self.runID = runID
        self.stages = stages
        self.timeoutSeconds = timeoutSeconds
        self.maxConcurrentJobs = maxConcurrentJobs
    }
}

/// Shared state of one execution: results by action id, and the records made by captures.
actor ExecutionState {
    var outcomes: [String: ActionResult.Outcome] = [:]
    var records: [String: VhdRecord] = [:]

    func set(_ id: String, _ outcome: ActionResult.Outcome) { outcomes[id] = outcome }
    func outcome(_ id: String) -> ActionResult.Outcome? { outcomes[id] }
    func addRecord(_ record: VhdRecord) { records[record.imageName] = record }
    func record(_ name: String) -> VhdRecord? { records[name] }
}

/// Executes a plan stage by stage; within a stage, actions run concurrently with never more
/// than `maxConcurrentJobs` in flight. One action's failure never stops the others; an action
/// whose dependency did not succeed is skipped.
public struct FactoryExecutor: Sendable {
    public var client: CloudClient
    public var configuration: FactoryConfiguration
    public var inventory: Inventory
    public var options: ExecutionOptions
    public var events: @Sendable (FactoryEvent) -> Void
    /// Target labs by identity, looked up once per distribution rather than scanned.
    let labsByKey: [String: Lab]

    public init(client: CloudClient, configuration: FactoryConfiguration, inventory: Inventory, options: ExecutionOptions,
                events: @escaping @Sendable (FactoryEvent) -> Void = { _ in }) {
        self.client = client
        self.configuration = configuration
        self.inventory = inventory
        self.options = options
        self.events = events
        labsByKey = Dictionary(inventory.labs.compactMap(\.lab).map { ($0.id.key, $0) }, uniquingKeysWith: { first, _ in first })
    }

    public func execute(_ plan: Plan) async throws -> RunSummary {
        let state = ExecutionState()
        for record in inventory.records { await state.addRecord(record) }
        var results: [ActionResult] = []
        let diagnostics = plan.diagnostics
        let deletionsBlocked = plan.deletionCount > plan.settings.maxDeletions
        for stage in Stage.allCases where options.stages.contains(stage) {
            var actions = plan.actions(in: stage)
            if actions.isEmpty { continue }
            if stage == .retire && deletionsBlocked {
                let now = Date()
                for action in actions where action.deletesImage {
                    results.append(ActionResult(action: action, outcome: .skipped, message: "not run: the plan exceeds --max-deletions", start: now, end: now))
                }
                actions.removeAll(where: \.deletesImage)
            }
            events(.stageStarted(stage, actions: actions.count))
            let stageResults = try await runStage(actions, state: state)
            results += stageResults
            events(.stageFinished(stage, succeeded: stageResults.filter { $0.outcome == .succeeded }.count,
                                  failed: stageResults.filter { $0.outcome == .failed }.count,
                                  skipped: stageResults.filter { $0.outcome == .skipped }.count))
        }
        return RunSummary(runID: options.runID, commit: plan.commit, results: results, diagnostics: diagnostics)
    }

    /// Runs a stage in waves: an action that depends on another action of the same stage (a stale
    /// VM's deletion before its rebuild) starts only after that action has finished.
    private func runStage(_ actions: [PlanAction], state: ExecutionState) async throws -> [ActionResult] {
        var remaining = actions
        var results: [ActionResult] = []
        while !remaining.isEmpty {
            let pending = Set(remaining.map(\.id))
            var wave = remaining.filter { $0.dependsOn.allSatisfy { !pending.contains($0) } }
            if wave.isEmpty { wave = remaining }  // a dependency cycle: run the rest rather than hang
            let ids = Set(wave.map(\.id))
            remaining.removeAll { ids.contains($0.id) }
            results += try await runWave(wave, state: state)
        }
        return results
    }

    private func runWave(_ actions: [PlanAction], state: ExecutionState) async throws -> [ActionResult] {
        try await withThrowingTaskGroup(of: ActionResult.self) { group in
            var results: [ActionResult] = []
            var iterator = actions.makeIterator()
            var inFlight = 0
            func startNext() -> Bool {
                guard let action = iterator.next() else { return false }
                group.addTask { await self.run(action, state: state) }
                return true
            }
            while inFlight < max(1, options.maxConcurrentJobs), startNext() { inFlight += 1 }
            while let result = try await group.next() {
                results.append(result)
                if !startNext() { inFlight -= 1 }
                try Task.checkCancellation()
            }
            return results
        }
    }

    private func run(_ action: PlanAction, state: ExecutionState) async -> ActionResult {
        let start = Date()
        for dependency in action.dependsOn {
            let outcome = await state.outcome(dependency)
            // Every dependency must have run and succeeded in this execution: one that failed, was skipped,
            // or was not run (its stage not selected) holds this action back, so `retire` alone never
            // deletes an image before its replacement exists.
            if outcome != .succeeded {
                await state.set(action.id, .skipped)
                let why = outcome == nil ? "was not run" : "did not succeed"
                let result = ActionResult(action: action, outcome: .skipped, message: "skipped: \(dependency) \(why)", start: start, end: Date())
                events(.actionFinished(result))
                return result
            }
        }
        events(.actionStarted(action))
        do {
            try await OperationContext.$jobID.withValue(action.id) {
                try await OperationContext.$runID.withValue(options.runID) {
                    try await perform(action, state: state)
                }
            }
            await state.set(action.id, action.kind == .reportUnknownVM ? .failed : .succeeded)
            let result = ActionResult(action: action, outcome: action.kind == .reportUnknownVM ? .failed : .succeeded,
                                      message: action.kind == .reportUnknownVM ? action.reason : nil, start: start, end: Date())
            events(.actionFinished(result))
            return result
        } catch {
            await state.set(action.id, .failed)
            let message: String
            switch error {
            case let e as CloudError: message = "\(e.code): \(e.message)"
            case is CancellationError: message = "canceled"
            default: message = "\(error)"
            }
            let result = ActionResult(action: action, outcome: .failed, message: message, start: start, end: Date())
            events(.actionFinished(result))
            return result
        }
    }

    // MARK: Actions

    var settings: FactorySettings { configuration.settings }
    var factory: Lab { inventory.factory }
    var factoryContainer: ContainerID { ContainerID(account: factory.storageAccount, name: settings.container) }

    private func perform(_ action: PlanAction, state: ExecutionState) async throws {
        switch action.kind {
        case .buildVM: try await build(action)
        case .replaceStaleVM: try await deleteVM(action.vmName!)
        case .captureImage: try await capture(action, state: state)
        case .distributeImage, .repairImage: try await distribute(action, state: state)
        case .deleteFactoryVM: try await deleteVM(action.vmName!)
        case .reportUnknownVM: return
        case .deleteTemporaryBlob: try await deleteTemporaryBlob(action)
        case .deleteTemporaryContainer: try await deleteTemporaryContainer(action)
        case .pruneDeployments: try await pruneDeployments(action)
        case .retireRecord: try await retireRecord(action)
        case .retireImage: try await retireImage(action)
        }
    }

    private func template(_ action: PlanAction) throws -> GoldenImageTemplate {
        guard let path = action.imagePath, let t = configuration.template(at: path) else {
            throw FactoryError(.invalidInput, "Template \(action.imagePath ?? "?") is not in the configuration.")
        }
        return t
    }

    private func build(_ action: PlanAction) async throws {
        let t = try template(action)
        let backend = client.backend
        let vm = VirtualMachineID(lab: factory.id, name: t.vmName)
        let tags = [FactoryTag.imagePath: t.path, FactoryTag.commit: configuration.commit ?? "worktree",
                    FactoryTag.templateSha: t.blobSha, FactoryTag.runID: options.runID]
        let password = Secrets.password()
        events(.secret(password))
        let request = VMDeploymentRequest(
            vm: vm, template: t.templateJSON,
            parameters: ["newVMName": t.vmName, "labName": factory.id.name, "size": t.vmSize ?? settings.vmSize,
                         "userName": "imagefactory", "password": password],
            artifacts: t.factoryArtifacts, tags: tags,
            deploymentName: "\(FactoryPlanner.deploymentPrefix)\(t.vmName.lowercased())-\(t.blobSha.prefix(8))")
        do {
            _ = try await client.call { try await backend.deployVirtualMachine(request) }
        } catch let error as CloudError where error.status == 409 {
            // A retried request whose first attempt did go through (a time-out, a lost answer):
            // the VM is ours if it carries this template's tags; anything else is a real conflict.
            let existing = try? await client.call { try await backend.getVirtualMachine(vm) }
            guard let existing, existing.tags[FactoryTag.templateSha] == t.blobSha,
                  existing.tags[FactoryTag.runID] == options.runID else { throw error }
        }
        try await finishBuild(t, vm: vm)
    }

    /// What follows a deployment, also for a VM adopted from an interrupted run: wait for
    /// provisioning, delete the VM and report each failed artifact if any, stop a specialized
    /// VM, and wait until it is deallocated (sysprep / deprovision shut generalized ones down).
    private func finishBuild(_ t: GoldenImageTemplate, vm: VirtualMachineID) async throws {
        let backend = client.backend
        let timeout = options.timeoutSeconds
        let provisioned = try await client.poll(timeout: timeout, what: "Deployment of \(t.vmName)",
                                                read: { try await backend.getVirtualMachine(vm) }, hint: { $0.retryAfter },
                                                done: { $0.provisioningState != "Creating" })
        if provisioned.provisioningState == "Failed" || !provisioned.failedArtifacts.isEmpty {
            let failures = provisioned.failedArtifacts.map { "\($0.name): \($0.message ?? "failed")" }
            let deletion = try? await client.call { try await backend.deleteVirtualMachine(vm) }
            if let deletion { try? await client.wait(for: deletion, timeout: timeout) }
            throw FactoryError(.workFailed, failures.isEmpty
                ? "VM \(t.vmName) failed to provision; it was deleted."
                : "VM \(t.vmName) was deleted because artifacts failed: " + failures.joined(separator: "; "))
        }
        if t.osState == .specialized && !provisioned.isDeallocated && provisioned.powerState.lowercased() != "deallocating" {
            let stop = try await client.call { try await backend.stopVirtualMachine(vm) }
            try await client.wait(for: stop, timeout: timeout)
        }
        _ = try await client.poll(timeout: timeout, what: "Shutdown of \(t.vmName)", read: { try await backend.getVirtualMachine(vm) },
                                  hint: { $0.retryAfter }, done: { $0.isDeallocated })
    }

    private func capture(_ action: PlanAction, state: ExecutionState) async throws {
        let t = try template(action)
        let backend = client.backend
        let name = action.imageName!
        let vm = VirtualMachineID(lab: factory.id, name: t.vmName)
        try await finishBuild(t, vm: vm)  // a no-op wait for a VM built in this run; the whole finish for an adopted one
        try await ensureContainer(factoryContainer)
        let vhd = BlobID(container: factoryContainer, name: name + ".vhd")
        _ = try await client.call { try await backend.exportOSDisk(vm, to: vhd) }
        let copied = try await waitForCopy(vhd, what: "Export of \(t.vmName)'s disk")
        guard let md5 = copied.contentMD5 else { throw CloudError(status: 500, code: "MissingContentMD5", message: "The exported VHD has no Content-MD5.") }
        let record = VhdRecord(imageName: name, imagePath: t.path, description: t.description, osType: t.osType, vhdFileName: vhd.name,
                               timestamp: Date(), osState: t.osState, commit: configuration.commit, templateBlobSha: t.blobSha,
                               sizeBytes: copied.contentLength, md5: md5, runId: options.runID)
        let data = try record.encoded()
        // The record goes last: its presence means the image is complete.
        _ = try await client.call { try await backend.putBlob(BlobID(container: self.factoryContainer, name: name + ".json"), data: data, metadata: [FactoryTag.imagePath: t.path]) }
        await state.addRecord(record)
    }

    private func waitForCopy(_ blob: BlobID, what: String) async throws -> BlobProperties {
        let backend = client.backend
        let done = try await client.poll(timeout: options.timeoutSeconds, what: what, read: { try await backend.getBlobProperties(blob) },
                                         hint: { $0.retryAfter }, done: { $0.copyStatus != .pending })
        guard done.copyStatus == nil || done.copyStatus == .success else {
            try? await client.call { try await backend.deleteBlob(blob) }
            throw CloudError(status: 500, code: "CopyFailed", message: "\(what) ended \(done.copyStatus?.rawValue ?? "?"): \(done.copyStatusDescription ?? "no detail")")
        }
        return done
    }

    private func ensureContainer(_ container: ContainerID) async throws {
        let backend = client.backend
        do {
            try await client.call { try await backend.createContainer(container) }
        } catch let error as CloudError where error.code == "ContainerAlreadyExists" {}
    }

    private func distribute(_ action: PlanAction, state: ExecutionState) async throws {
        let backend = client.backend
        guard let labID = action.labID, let name = action.imageName,
              let lab = labsByKey[labID.key] else {
            throw FactoryError(.workFailed, "Lab \(action.lab ?? "?") is not in the inventory.")
        }
        guard let record = await state.record(name) else {
            throw FactoryError(.workFailed, "No record for image \(name) in the factory storage.")
        }
        let timeout = options.timeoutSeconds
        let imageID = CustomImageID(lab: lab.id, name: name)
        if action.kind == .repairImage {
            // Only the factory's own failed copy is deleted; the tag is checked again right before.
            let current = try await client.call { try await backend.getCustomImage(imageID) }
            guard current.tags[FactoryTag.imagePath] != nil else {
                throw FactoryError(.workFailed, "Image \(name) in \(lab.id.name) is not the factory's (no ImagePath tag); it was left alone.")
            }
            let deletion = try await client.call { try await backend.deleteCustomImage(imageID) }
            try await client.wait(for: deletion, timeout: timeout)
        }
        let container = ContainerID(account: lab.storageAccount, name: settings.container)
        try await ensureContainer(container)
        let source = BlobID(container: factoryContainer, name: record.vhdFileName)
        let destination = BlobID(container: container, name: name + ".vhd")
        // A copy left pending by an interrupted run blocks a new one (409 PendingCopyOperation): abort it first.
        if let leftover = try? await client.call({ try await backend.getBlobProperties(destination) }), leftover.copyStatus == .pending {
            do {
                try await client.call { try await backend.abortBlobCopy(destination) }
            } catch let error as CloudError where error.code == "NoPendingCopyOperation" {}
        }
        _ = try await client.call { try await backend.startBlobCopy(from: source, to: destination) }
        let copied = try await waitForCopy(destination, what: "Copy of \(name) to \(lab.id.name)")
        if let expected = record.md5, copied.contentMD5 != expected {
            try? await client.call { try await backend.deleteBlob(destination) }
            throw CloudError(status: 500, code: "Md5Mismatch", message: "The copy of \(name) in \(lab.id.name) has MD5 \(copied.contentMD5 ?? "none"), expected \(expected).")
        }
        var tags = [FactoryTag.imagePath: record.imagePath, FactoryTag.runID: options.runID]
        if let commit = record.commit { tags[FactoryTag.commit] = commit }
        if let sha = record.templateBlobSha { tags[FactoryTag.templateSha] = sha }
        let request = CustomImageRequest(id: imageID, vhd: destination, osType: record.osType, sysprep: record.isGeneralized,
                                         description: record.description, author: "ImageFactory", tags: tags)
        let handle = try await client.call { try await backend.createCustomImage(request) }
        try await client.wait(for: handle, timeout: timeout)
        do {
            try await client.call { try await backend.deleteBlob(destination) }
        } catch let error as CloudError where error.isNotFound {}
    }

    private func deleteVM(_ name: String) async throws {
        let backend = client.backend
        let vm = VirtualMachineID(lab: factory.id, name: name)
        do {
            let handle = try await client.call { try await backend.deleteVirtualMachine(vm) }
            try await client.wait(for: handle, timeout: options.timeoutSeconds)
        } catch let error as CloudError where error.isNotFound {}
    }

    private func blobID(_ action: PlanAction) throws -> BlobID {
        guard let resource = action.resource, let labID = action.labID else { throw FactoryError(.workFailed, "Action \(action.id) names no blob.") }
        let parts = resource.split(separator: "/", maxSplits: 2).map(String.init)
        guard parts.count == 3 else { throw FactoryError(.workFailed, "Action \(action.id) has a malformed blob name.") }
        let account = StorageAccountID(subscriptionId: labID.subscriptionId, resourceGroup: labID.resourceGroup, name: parts[0])
        return BlobID(container: ContainerID(account: account, name: parts[1]), name: parts[2])
    }

    private func deleteTemporaryBlob(_ action: PlanAction) async throws {
        let backend = client.backend
        let blob = try blobID(action)
        do {
            try await client.call { try await backend.deleteBlob(blob) }
        } catch let error as CloudError where error.isNotFound {}
    }

    private func deleteTemporaryContainer(_ action: PlanAction) async throws {
        let backend = client.backend
        guard let resource = action.resource, let labID = action.labID else { throw FactoryError(.workFailed, "Action \(action.id) names no container.") }
        let parts = resource.split(separator: "/").map(String.init)
        guard parts.count >= 2 else { throw FactoryError(.workFailed, "Action \(action.id) has a malformed container name.") }
        let container = ContainerID(account: StorageAccountID(subscriptionId: labID.subscriptionId, resourceGroup: labID.resourceGroup, name: parts[0]), name: parts[1])
        do {
            try await client.call { try await backend.deleteContainer(container) }
        } catch let error as CloudError where error.code == "ContainerNotFound" {}
    }

    private func pruneDeployments(_ action: PlanAction) async throws {
        let backend = client.backend
        let names = (action.resource ?? "").split(separator: "\n").map(String.init)
        let factoryID = factory.id
        _ = try await BoundedConcurrency.map(names, limit: 8) { name in
            do {
                try await self.client.call { try await backend.deleteDeployment(subscriptionId: factoryID.subscriptionId, resourceGroup: factoryID.resourceGroup, name: name) }
            } catch let error as CloudError where error.isNotFound {}
        }
    }

    private func retireRecord(_ action: PlanAction) async throws {
        let backend = client.backend
        let name = action.imageName!
        for blobName in [name + ".json", action.resource ?? name + ".vhd"] {
            do {
                try await client.call { try await backend.deleteBlob(BlobID(container: self.factoryContainer, name: blobName)) }
            } catch let error as CloudError where error.isNotFound {}
        }
    }

    private func retireImage(_ action: PlanAction) async throws {
        let backend = client.backend
        guard let labID = action.labID, let name = action.imageName else { return }
        let id = CustomImageID(lab: labID, name: name)
        // Never delete an image the factory does not own: check the tag again right before deleting.
        let image: CustomImage
        do {
            image = try await client.call { try await backend.getCustomImage(id) }
        } catch let error as CloudError where error.isNotFound { return }
        guard image.tags[FactoryTag.imagePath] != nil else {
            throw FactoryError(.workFailed, "Image \(name) in \(labID.name) has no ImagePath tag any more; it was left alone.")
        }
        let handle = try await client.call { try await backend.deleteCustomImage(id) }
        try await client.wait(for: handle, timeout: options.timeoutSeconds)
    }
}

/// Secrets made for factory VMs. They are passed to the backend only, never logged or printed.
enum Secrets {
    static func password() -> String {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789")
        let body = String((0..<20).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] })
        return body + "!9aA"
    }
}
