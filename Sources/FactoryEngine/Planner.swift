import FactoryModel
import Foundation

/// Options that shape a plan.
public struct PlanOptions: Sendable {
    public var force: Bool
    public var now: Date
    /// Completed factory deployments older than this are pruned (the original used 15 days).
    public var deploymentMaxAge: Double
    /// Prune the oldest completed deployments above this count, well before Azure's 800.
    public var deploymentSoftLimit: Int
    /// Retire the factory's images in labs an earlier run delivered to that Labs.json no longer lists.
    public var retireRemovedLabs: Bool
    /// Copies fan out as a tree (each finished copy seeds others in its region); false: every copy
    /// reads the factory's VHD (a star), for comparison.
    public var treeCopies = true
    /// The part of the factory the plan is for. A shard's plan holds its targets' actions only (the
    /// configuration it is given is already restricted to them) and none of the factory's problems.
    public var scope: RunScope = .whole

    public init(force: Bool = false, now: Date = Date(), deploymentMaxAge: Double = 15 * 86_400, deploymentSoftLimit: Int = 600,
                retireRemovedLabs: Bool = false) {
        self.force = force
        self.retireRemovedLabs = retireRemovedLabs
        self.now = now
        self.deploymentMaxAge = deploymentMaxAge
        self.deploymentSoftLimit = deploymentSoftLimit
    }
}

/// Computes a plan from desired state (configuration) and observed state (inventory). Pure:
/// no I/O, the same inputs give the same plan.
public enum FactoryPlanner {
    public static let deploymentPrefix = "imagefactory-"

    /// The parent of the `index`-th copy (0-based) of one image in one region, in a binomial tree:
    /// nil means the factory's VHD. In the factory's region the factory is the root and node k (1-based)
    /// reads node k - 2^⌊log2 k⌋; in another region one cross-region copy seeds it and the others read
    /// within the region.
    static func treeParent(index: Int, rootIsFactory: Bool) -> Int? {
        let k = rootIsFactory ? index + 1 : index  // 1-based position below the root
        guard k >= 1 else { return nil }            // the first copy of a remote region: from the factory
        let top = 1 << (Int.bitWidth - 1 - k.leadingZeroBitCount)
        let parent = k - top                         // 0 is the root
        if rootIsFactory { return parent == 0 ? nil : parent - 1 }
        return parent
    }

    public static func plan(_ configuration: FactoryConfiguration, inventory: Inventory, options: PlanOptions = PlanOptions()) -> Plan {
        let settings = configuration.settings
        var actions: [PlanAction] = []
        // The factory's own problems (unreadable records, strange factory VMs) are the build job's to
        // report: a shard does none of that work, and N shards would say it N times.
        let factoryWork = options.scope.includesFactoryWork
        var diagnostics = factoryWork ? inventory.problems : []
        let factory = inventory.factory
        let factoryContainer = ContainerID(account: factory.storageAccount, name: settings.container)
        let templates = Dictionary(uniqueKeysWithValues: configuration.templates.map { ($0.path, $0) })
        let existingTemplatePaths = Set(configuration.templates.map(\.path))
        var recordsByPath: [String: [VhdRecord]] = [:]
        let blobsByName = Dictionary(inventory.factoryBlobs.map { ($0.id.name, $0) }, uniquingKeysWith: { a, _ in a })
        var brokenRecords: [VhdRecord] = []
        for record in inventory.records {
            let vhd = blobsByName[record.vhdFileName]
            if vhd == nil || vhd?.copyStatus == .failed || vhd?.copyStatus == .aborted {
                brokenRecords.append(record)
            } else {
                recordsByPath[record.imagePath, default: []].append(record)
            }
        }
        for key in recordsByPath.keys { recordsByPath[key]!.sort { ($0.timestamp, $0.imageName) > ($1.timestamp, $1.imageName) } }
        let vmsByName = Dictionary(inventory.factoryVMs.map { ($0.id.name.lowercased(), $0) }, uniquingKeysWith: { a, _ in a })
        // Lab lookups by Labs.json key (the first entry wins, as `Inventory.lab(_:)` does): one hash each, not a scan of every lab.
        let labsByKey = Dictionary(inventory.labs.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        // Action ids name a lab by its name, or by name@subscription when two labs share a name:
        // ids must be unique, or one lab's retirements would wait for the other lab's copy.
        var labNameCount: [String: Int] = [:]
        for lab in Set(inventory.labs.compactMap { $0.lab?.id } + inventory.removedLabs.compactMap { $0.lab?.id } + [factory.id]) {
            labNameCount[lab.name.lowercased(), default: 0] += 1
        }
        func label(_ lab: LabID) -> String {
            (labNameCount[lab.name.lowercased()] ?? 0) > 1 ? "\(lab.name)@\(lab.subscriptionId)" : lab.name
        }
        var takenNames = Set(inventory.records.map(\.imageName))
        for blob in inventory.factoryBlobs { takenNames.insert((blob.id.name as NSString).deletingPathExtension) }
        // A name some lab already uses for an image the factory did not make is not free either.
        for lab in inventory.labs { for image in lab.images where image.tags[FactoryTag.imagePath] == nil { takenNames.insert(image.id.name) } }

        /// The image each template path will have at the end of the run: the planned capture or the newest record.
        /// Computed once per path and shared by every lab's distribution of it (a class: looked up
        /// for every lab × path, so a copy is one reference, not a dozen strings).
        final class Latest {
            let imageName: String
            let captureAction: String?
            let timestamp: Date
            /// What a lab's custom image is made from.
            let osType: OSType
            let generalized: Bool
            let description: String
            let source: BlobID
            let md5: String?
            let tags: [String: String]

            init(imageName: String, captureAction: String?, timestamp: Date, osType: OSType, generalized: Bool, description: String,
                 commit: String?, templateSha: String?, path: String, source: BlobID, md5: String?) {
                self.imageName = imageName
                self.captureAction = captureAction
                self.timestamp = timestamp
                self.osType = osType
                self.generalized = generalized
                self.description = description
                self.source = source
                self.md5 = md5
                var tags = [FactoryTag.imagePath: path]
                if let commit { tags[FactoryTag.commit] = commit }
                if let templateSha { tags[FactoryTag.templateSha] = templateSha }
                self.tags = tags
            }
        }
        var latest: [String: Latest] = [:]
        var adoptedVMs = Set<String>()
        var builtVMs: [String: String] = [:]  // vm name (lowercased) -> capture action id

        // Build and snap.
        for template in configuration.templates {
            let current = recordsByPath[template.path]?.first { $0.templateBlobSha == template.blobSha }
            if let current, !options.force {
                latest[template.path] = Latest(imageName: current.imageName, captureAction: nil, timestamp: current.timestamp,
                                               osType: current.osType, generalized: current.isGeneralized, description: current.description,
                                               commit: current.commit, templateSha: current.templateBlobSha, path: template.path,
                                               source: BlobID(container: factoryContainer, name: current.vhdFileName), md5: current.md5)
                continue
            }
            let imageName = Naming.datedImageName(base: template.imageName, date: options.now, taken: takenNames)
            takenNames.insert(imageName)
            let captureID = "snap/\(template.path)"
            var dependsOn: [String] = []
            let vmKey = template.vmName.lowercased()
            let vmID = VirtualMachineID(lab: factory.id, name: template.vmName)
            func capture(adopted: Bool) -> PlanOperation {
                .captureImage(CaptureSpec(vm: vmID, imageName: imageName, imagePath: template.path, description: template.description,
                                          osType: template.osType, osState: template.osState, commit: configuration.commit,
                                          templateSha: template.blobSha, vhd: BlobID(container: factoryContainer, name: imageName + ".vhd"),
                                          record: BlobID(container: factoryContainer, name: imageName + ".json"), adopted: adopted))
            }
            if let vm = vmsByName[vmKey], vm.tags[FactoryTag.imagePath].map(ImagePath.normalize) == template.path,
               vm.tags[FactoryTag.templateSha] == template.blobSha, !vm.provisioningState.hasFailed, vm.failedArtifacts.isEmpty, !options.force {
                adoptedVMs.insert(vmKey)
                actions.append(PlanAction(id: captureID, stage: .snap, operation: capture(adopted: true),
                                          reason: "resume: factory VM \(template.vmName) from an earlier run already has this template"))
            } else {
                let buildID = "build/\(template.path)"
                if let vm = vmsByName[vmKey] {
                    if vm.tags[FactoryTag.imagePath] == nil && vm.tags[FactoryTag.ignore] == nil || vm.tags[FactoryTag.ignore] != nil {
                        if factoryWork {
                            diagnostics.append(.error("Factory VM name \(template.vmName) for \(template.path) is taken by a VM the factory does not own.",
                                                      hint: "Rename or remove that VM, or set metadata.imageFactory.vmName in the template."))
                        }
                        continue
                    }
                    let staleID = "build/replace/\(template.vmName)"
                    actions.append(PlanAction(id: staleID, stage: .build, operation: .replaceStaleVM(FactoryVMSpec(vm: vmID, imagePath: template.path)),
                                              reason: "factory VM \(template.vmName) was left by an earlier run with another template version"))
                    dependsOn = [staleID]
                }
                let reason: String
                if options.force { reason = "--force: rebuild even though unchanged" }
                else if recordsByPath[template.path] == nil { reason = "new template: no image yet" }
                else { reason = "template changed (blob \(template.blobSha.prefix(10)))" }
                let deployment = BuildVMSpec(
                    vm: vmID, imagePath: template.path, templateSha: template.blobSha, osState: template.osState,
                    template: JSONText.decodeText(template.templateJSON) ?? String(decoding: template.templateJSON, as: UTF8.self),
                    parameters: ["newVMName": template.vmName, "labName": factory.id.name, "size": template.vmSize ?? settings.vmSize,
                                 "userName": "imagefactory"],
                    artifacts: template.factoryArtifacts,
                    tags: [FactoryTag.imagePath: template.path, FactoryTag.commit: configuration.commit ?? "worktree", FactoryTag.templateSha: template.blobSha],
                    deploymentName: "\(deploymentPrefix)\(template.vmName.lowercased())-\(template.blobSha.prefix(8))")
                actions.append(PlanAction(id: buildID, stage: .build, operation: .buildVM(deployment), reason: reason, dependsOn: dependsOn))
                actions.append(PlanAction(id: captureID, stage: .snap, operation: capture(adopted: false),
                                          reason: "capture the new VM as a \(template.osState.rawValue) VHD", dependsOn: [buildID]))
            }
            builtVMs[vmKey] = captureID
            latest[template.path] = Latest(imageName: imageName, captureAction: captureID, timestamp: options.now, osType: template.osType,
                                           generalized: template.osState == .generalized, description: template.description,
                                           commit: configuration.commit, templateSha: template.blobSha, path: template.path,
                                           source: BlobID(container: factoryContainer, name: imageName + ".vhd"), md5: nil)
        }

        // Distribute: every lab gets the newest image of every path it subscribes to.
        var distributeActions: [String: String] = [:]  // "labkey|path" -> action id
        var distributionsByLab: [String: [String]] = [:]  // LabID key -> this run's distributions to it
        var temporaryInUse = Set<String>()
        // Copies fan out as a tree per image and region: each finished copy is a source for later ones
        // in its region (binomial tree: the number of sources doubles each round), so one image reaches
        // N labs in about log2(N+1) copy times, not N, when a source's read bandwidth is the limit.
        struct TreeNode { var action: String; var lab: LabID; var copy: BlobID; var parent: Int? }
        var trees: [String: [TreeNode]] = [:]  // "path|region" -> nodes in plan order
        var actionIndex: [String: Int] = [:]
        // A source serves its copies one after another (one per round, at its full bandwidth): each
        // copy comes after the previous copy from the same source. The factory's VHD is one source for
        // every region of a path.
        var lastChild: [String: String] = [:]  // "path|region|node" or "path|factory" -> the last copy it serves
        for target in configuration.labs {
            guard let labInventory = labsByKey[target.key], let lab = labInventory.lab else {
                let problem = labsByKey[target.key]?.problem ?? "Lab \(target.labName) was not read."
                diagnostics.append(.error(problem, file: configuration.configDirectory + "/Labs.json", line: target.line,
                                          hint: "Create the lab (or run `imagefactory local init`), or fix its entry in Labs.json."))
                continue
            }
            if lab.id.key == factory.id.key || lab.storageAccount.name.lowercased() == factory.storageAccount.name.lowercased() {
                diagnostics.append(.error("Lab \(target.labName) is the factory lab: it keeps the images as VHDs and receives no copies.",
                                          file: configuration.configDirectory + "/Labs.json", line: target.line,
                                          hint: "Remove the factory lab from Labs.json."))
                continue
            }
            let imagesByName = Dictionary(labInventory.images.map { ($0.id.name.lowercased(), $0) }, uniquingKeysWith: { a, _ in a })
            let crossRegion = Location.normalize(lab.location) != Location.normalize(factory.location)
            let labContainer = ContainerID(account: lab.storageAccount, name: settings.container)
            for path in target.images {
                guard let newest = latest[path] else { continue }  // template failed to parse: reported by validation
                let existing = imagesByName[newest.imageName.lowercased()]
                var repair = false
                var reason = "lab subscribes to \(path) and lacks \(newest.imageName)"
                if let existing {
                    guard existing.tags[FactoryTag.imagePath] != nil else {
                        diagnostics.append(.error("Lab \(lab.id.name) has an image named \(existing.id.name) that the factory did not make; \(path) cannot be delivered under that name.",
                                                  hint: "Rename or remove that image in the lab."))
                        continue
                    }
                    if !existing.provisioningState.hasFailed {
                        // An image still being created keeps its source VHD until it is done.
                        if existing.provisioningState != "Succeeded" { temporaryInUse.insert("\(lab.storageAccount.name)/\(newest.imageName).vhd") }
                        continue
                    }
                    repair = true
                    reason = "a failed copy of \(newest.imageName) is in the lab: delete and make it again"
                } else if labInventory.blobs.contains(where: { $0.id.name == newest.imageName + ".vhd" }) {
                    reason = "a half-made copy of \(newest.imageName) is in the lab: copy again"
                }
                if crossRegion { reason += "; cross-region copy \(factory.location) → \(lab.location)" }
                temporaryInUse.insert("\(lab.storageAccount.name)/\(newest.imageName).vhd")
                let id = "distribute/\(label(lab.id))/\(path)"
                distributeActions["\(target.key)|\(path)"] = id
                // A shard leaves out a copy whose image the build job has not captured yet (`scoped`):
                // no container waits for it.
                let copiesNow = factoryWork || newest.captureAction == nil
                if copiesNow { distributionsByLab[lab.id.key, default: []].append(id) }
                var spec = DistributionSpec(
                    image: CustomImageID(lab: lab.id, name: newest.imageName), imagePath: path, source: newest.source,
                    destination: BlobID(container: labContainer, name: newest.imageName + ".vhd"),
                    osType: newest.osType, generalized: newest.generalized, description: newest.description, tags: newest.tags,
                    expectedMD5: newest.md5, capture: newest.captureAction, crossRegion: crossRegion)
                let treeKey = "\(path)|\(Location.normalize(lab.location))"
                var nodes = trees[treeKey] ?? []
                let parent = options.treeCopies ? Self.treeParent(index: nodes.count, rootIsFactory: !crossRegion) : nil
                var after: [String] = []
                let sourceKey = parent.map { "\(treeKey)|\($0)" } ?? "\(path)|factory"
                if options.treeCopies, let previous = lastChild[sourceKey] { after.append(previous) }
                if options.treeCopies { lastChild[sourceKey] = id }
                if let parent {
                    // Read the parent's copy, else its ancestors', else the factory's VHD.
                    var chain: [BlobID] = []
                    var p: Int? = parent
                    while let i = p { chain.append(nodes[i].copy); p = nodes[i].parent }
                    spec.sourceCandidates = chain + [newest.source]
                    after.append(nodes[parent].action)
                    reason += "; copied from \(nodes[parent].lab.name)'s copy (tree)"
                    // The parent's copy stays for this one: its lab's temporary container goes after this copy too.
                    if let i = actionIndex[nodes[parent].action] {
                        switch actions[i].operation {
                        case .distributeImage(var parentSpec): parentSpec.keepCopy = true; actions[i].operation = .distributeImage(parentSpec)
                        case .repairImage(var parentSpec): parentSpec.keepCopy = true; actions[i].operation = .repairImage(parentSpec)
                        default: break
                        }
                    }
                    if copiesNow { distributionsByLab[nodes[parent].lab.key, default: []].append(id) }
                }
                nodes.append(TreeNode(action: id, lab: lab.id, copy: spec.destination, parent: parent))
                trees[treeKey] = nodes
                actionIndex[id] = actions.count
                actions.append(PlanAction(id: id, stage: .distribute, operation: repair ? .repairImage(spec) : .distributeImage(spec),
                                          reason: reason, dependsOn: newest.captureAction.map { [$0] } ?? [], after: after))
            }
        }

        // Cleanup: factory VMs, temporary blobs, old deployments.
        for vm in inventory.factoryVMs.sorted(by: { $0.id.name < $1.id.name }) {
            let key = vm.id.name.lowercased()
            if vm.tags[FactoryTag.ignore] != nil { continue }
            if vm.tags[FactoryTag.imagePath] != nil {
                if builtVMs[key] != nil && !adoptedVMs.contains(key) { continue }  // replaced or rebuilt: handled below
                if vm.provisioningState.hasFailed && factoryWork {
                    diagnostics.append(.error("Factory VM \(vm.id.name) (\(vm.tags[FactoryTag.imagePath] ?? "?")) failed to provision; it is deleted.",
                                              hint: "Look at the template's artifacts and the lab's deployment history; the next run builds it again."))
                }
                let reason = vm.provisioningState.hasFailed ? "factory VM failed to provision (\(vm.provisioningState))" : "factory VM is no longer needed once captured"
                actions.append(PlanAction(id: "cleanup/vm/\(vm.id.name)", stage: .cleanup,
                                          operation: .deleteFactoryVM(FactoryVMSpec(vm: vm.id, imagePath: vm.tags[FactoryTag.imagePath])), reason: reason,
                                          dependsOn: builtVMs[key].map { [$0] } ?? []))
            } else if factoryWork {
                // Not the factory's and not marked to keep: reported, left alone (a warning, never a failure).
                diagnostics.append(.warning("VM \(vm.id.name) in the factory lab \(factory.id.name) is not recognized; it was left alone.",
                                            hint: "Add the FactoryIgnore tag to keep it, or delete it."))
            }
        }
        for template in configuration.templates {
            let key = template.vmName.lowercased()
            guard let captureID = builtVMs[key], !adoptedVMs.contains(key) else { continue }
            actions.append(PlanAction(id: "cleanup/vm/\(template.vmName)", stage: .cleanup,
                                      operation: .deleteFactoryVM(FactoryVMSpec(vm: VirtualMachineID(lab: factory.id, name: template.vmName), imagePath: template.path)),
                                      reason: "factory VM is no longer needed once captured",
                                      dependsOn: [captureID]))
        }
        var recordFiles = Set(inventory.records.flatMap { [$0.vhdFileName, $0.imageName + ".json"] })
        // A record this version cannot read still owns its VHD: never delete it as temporary.
        for blob in inventory.factoryBlobs where blob.id.name.lowercased().hasSuffix(".json") {
            recordFiles.insert(String(blob.id.name.dropLast(5)) + ".vhd")
        }
        for blob in inventory.factoryBlobs.sorted(by: { $0.id.name < $1.id.name }) {
            let name = blob.id.name
            if recordFiles.contains(name) || FactoryStateBlobs.isState(name) { continue }
            if name.lowercased().hasSuffix(".json") { continue }  // unreadable records are reported, never deleted
            actions.append(PlanAction(id: "cleanup/blob/\(factory.storageAccount.name)/\(name)", stage: .cleanup,
                                      operation: .deleteTemporaryBlob(BlobID(container: factoryContainer, name: name)),
                                      reason: "VHD without a record: left by an interrupted capture", labHint: factory.id))
        }
        for labInventory in inventory.labs {
            guard let lab = labInventory.lab, lab.storageAccount.name.lowercased() != factory.storageAccount.name.lowercased() else { continue }
            for blob in labInventory.blobs where !temporaryInUse.contains("\(lab.storageAccount.name)/\(blob.id.name)") {
                actions.append(PlanAction(id: "cleanup/blob/\(lab.storageAccount.name)/\(blob.id.name)", stage: .cleanup,
                                          operation: .deleteTemporaryBlob(BlobID(container: ContainerID(account: lab.storageAccount, name: settings.container), name: blob.id.name)),
                                          reason: "temporary copy left by an interrupted distribution", labHint: lab.id))
            }
        }
        // A target lab's temporary container goes once this run's distributions to it are done.

        for labInventory in inventory.labs {
            guard let lab = labInventory.lab, lab.id.key != factory.id.key else { continue }
            let copies = distributionsByLab[lab.id.key] ?? []
            let pending = !copies.isEmpty
            guard labInventory.hasTemporaryContainer || pending else { continue }
            actions.append(PlanAction(id: "cleanup/container/\(lab.storageAccount.name)", stage: .cleanup,
                                      operation: .deleteTemporaryContainer(ContainerID(account: lab.storageAccount, name: settings.container)),
                                      reason: pending ? "temporary container of this run's copies" : "temporary container left by an earlier run",
                                      labHint: lab.id, after: copies))
        }
        let completed = inventory.deployments.filter { $0.provisioningState.isTerminal && $0.name.lowercased().hasPrefix(deploymentPrefix) }
            .sorted { $0.timestamp < $1.timestamp }
        var prune = completed.filter { options.now.timeIntervalSince($0.timestamp) > options.deploymentMaxAge }
        if inventory.deployments.count > options.deploymentSoftLimit {
            let excess = inventory.deployments.count - options.deploymentSoftLimit
            for d in completed.prefix(excess) where !prune.contains(d) { prune.append(d) }
        }
        // A build of this plan reuses its template's deployment name (a --force rebuild of an
        // unchanged template): never prune that one, it may be running by then.
        let buildingNow = Set(actions.compactMap { action -> String? in
            if case .buildVM(let spec) = action.operation { return spec.deploymentName.lowercased() }
            return nil
        })
        prune.removeAll { buildingNow.contains($0.name.lowercased()) }
        if !prune.isEmpty {
            actions.append(PlanAction(id: "cleanup/deployments", stage: .cleanup,
                                      operation: .pruneDeployments(DeploymentPruneSpec(subscriptionId: factory.id.subscriptionId,
                                                                                       resourceGroup: factory.id.resourceGroup, names: prune.map(\.name))),
                                      reason: "\(prune.count) old factory deployment\(prune.count == 1 ? "" : "s") in \(factory.id.resourceGroup) (\(inventory.deployments.count) of Azure's 800)",
                                      labHint: factory.id))
        }

        // Retire: records in the factory storage.
        func retireRecord(_ record: VhdRecord, reason: String, dependsOn: [String] = []) -> PlanAction {
            PlanAction(id: "retire/record/\(record.imageName)", stage: .retire,
                       operation: .retireRecord(RecordRetirementSpec(imageName: record.imageName, imagePath: record.imagePath,
                                                                     record: BlobID(container: factoryContainer, name: record.imageName + ".json"),
                                                                     vhd: BlobID(container: factoryContainer, name: record.vhdFileName))),
                       reason: reason, dependsOn: dependsOn, labHint: factory.id)
        }
        for record in brokenRecords {
            actions.append(retireRecord(record, reason: "the record's VHD is missing or incomplete"))
        }
        for (path, records) in recordsByPath.sorted(by: { $0.key < $1.key }) {
            if !existingTemplatePaths.contains(path) {
                for r in records {
                    actions.append(retireRecord(r, reason: "template \(path) no longer exists at this commit"))
                }
                continue
            }
            // The image labs get this run (planned or existing) is always kept and counts as one of imagesToSave,
            // even when a newer record exists (a reverted template).
            let current = latest[path]?.imageName
            let keep = max(0, settings.imagesToSave - (current != nil ? 1 : 0))
            for r in records.filter({ $0.imageName != current }).dropFirst(keep) {
                actions.append(retireRecord(r, reason: "older than the newest \(settings.imagesToSave) of \(path)",
                                            dependsOn: latest[path]?.captureAction.map { [$0] } ?? []))
            }
        }
        // Retire: custom images in the factory lab and every target lab (only ImagePath-tagged ones).
        func retireImages(in labID: LabID, images: [CustomImage], subscribes: ((String) -> Bool)?, labKey: String?) {
            var byPath: [String: [CustomImage]] = [:]
            for image in images {
                guard let tag = image.tags[FactoryTag.imagePath] else { continue }
                byPath[ImagePath.normalize(tag), default: []].append(image)
            }
            for (path, group) in byPath.sorted(by: { $0.key < $1.key }) {
                let sorted = group.sorted { ($0.createdAt, $0.id.name) > ($1.createdAt, $1.id.name) }
                let templateExists = templates[path] != nil || existingTemplatePaths.contains { ImagePath.covers(path, $0, ignoringCase: true) }
                var reason: String?
                var victims: [CustomImage] = []
                if !templateExists {
                    reason = "template \(path) no longer exists at this commit"
                    victims = sorted
                } else if let subscribes, !subscribes(path) {
                    reason = "the lab no longer subscribes to \(path)"
                    victims = sorted
                } else {
                    // The lab's current image (arriving this run or already there) is kept and counts as one.
                    let newName = labKey != nil ? latest[path]?.imageName.lowercased() : nil
                    // The current image counts as one kept only once it exists for sure: one still
                    // being created may yet fail, so the older ones stay meanwhile.
                    let current = newName.flatMap { name in sorted.first { $0.id.name.lowercased() == name } }
                    let currentIsSettled = current.map { $0.provisioningState == .succeeded } ?? true
                    let keep = max(0, settings.imagesToSave - (newName != nil && currentIsSettled ? 1 : 0))
                    let candidates = sorted.filter { $0.id.name.lowercased() != newName }
                    victims = Array(candidates.dropFirst(keep))
                    reason = "older than the newest \(settings.imagesToSave) of \(path)"
                }
                for image in victims {
                    let distribute = labKey.flatMap { distributeActions["\($0)|\(path)"] }
                    actions.append(PlanAction(id: "retire/image/\(label(labID))/\(image.id.name)", stage: .retire,
                                              operation: .retireImage(ImageRetirementSpec(image: image.id, imagePath: path)), reason: reason ?? "",
                                              dependsOn: distribute.map { [$0] } ?? []))
                }
            }
        }
        retireImages(in: factory.id, images: inventory.factoryImages, subscribes: nil, labKey: nil)
        for target in configuration.labs {
            guard let labInventory = labsByKey[target.key], let lab = labInventory.lab else { continue }
            if lab.id.key == factory.id.key { continue }
            retireImages(in: lab.id, images: labInventory.images, subscribes: { path in target.subscribes(to: path) || target.images.contains { ImagePath.covers(path, $0, ignoringCase: true) } }, labKey: target.key)
        }

        // Labs that left Labs.json: their factory images are reported, or retired when asked.
        for removed in inventory.removedLabs.sorted(by: { $0.key < $1.key }) {
            guard let lab = removed.lab else { continue }
            let owned = removed.images.filter { $0.tags[FactoryTag.imagePath] != nil }.sorted { $0.id.name < $1.id.name }
            guard !owned.isEmpty else { continue }
            if options.retireRemovedLabs {
                for image in owned {
                    actions.append(PlanAction(id: "retire/image/\(label(lab.id))/\(image.id.name)", stage: .retire,
                                              operation: .retireImage(ImageRetirementSpec(image: image.id, imagePath: ImagePath.normalize(image.tags[FactoryTag.imagePath]!))),
                                              reason: "lab \(lab.id.name) is no longer in Labs.json (--retire-removed-labs)"))
                }
            } else {
                diagnostics.append(.warning("Lab \(lab.id.name) (\(lab.id.resourceGroup), \(lab.id.subscriptionId)) received images from an earlier run but is no longer in Labs.json; its \(owned.count) factory image\(owned.count == 1 ? " stays" : "s stay") where it is.",
                                            hint: "Run with --retire-removed-labs to retire them (counted against --max-deletions), or add the lab back to Labs.json."))
            }
        }

        // Galleries: each publishes the image every subscribed path has at the end of the run.
        var sources: [String: GalleryImageSource] = [:]
        for (path, newest) in latest {
            let record = newest.captureAction == nil ? recordsByPath[path]?.first { $0.imageName == newest.imageName } : nil
            sources[path] = GalleryImageSource(record: record, captureAction: newest.captureAction, vhd: newest.source,
                                               recordBlob: BlobID(container: factoryContainer, name: newest.imageName + ".json"), tags: newest.tags)
        }
        let galleries = GalleryPlanner.plan(configuration, inventory: inventory, sources: sources)
        actions += galleries.actions
        diagnostics += galleries.diagnostics

        // A shard keeps its targets' actions, the factory's own work keeps the rest.
        let scoped = Self.scoped(actions, to: options.scope, configuration: configuration, factory: factory.id)
        actions = scoped.actions
        diagnostics += scoped.diagnostics
        let deletions = actions.reduce(0) { $0 + ($1.deletesImage ? 1 : 0) }
        let versionDeletions = actions.reduce(0) { $0 + ($1.kind == .retireVersion && $1.deletesImage ? 1 : 0) }
        if deletions > settings.maxDeletions {
            let what = versionDeletions == 0 ? "\(deletions) images" : "\(deletions - versionDeletions) images and \(versionDeletions) gallery versions (\(deletions))"
            diagnostics.append(.error("This run would delete \(what), more than --max-deletions \(settings.maxDeletions): no image will be deleted.",
                                      hint: "Check Labs.json and the templates (a removed folder retires every image under it); if the deletions are intended, raise --max-deletions."))
        }
        var plan = Plan(commit: configuration.commit, inventoryFingerprint: inventory.fingerprint, createdAt: options.now,
                        factory: FactoryTarget(lab: factory.id, location: factory.location, container: factoryContainer),
                        settings: PlanSettings(maxConcurrentJobs: settings.maxConcurrentJobs, imagesToSave: settings.imagesToSave,
                                               maxDeletions: settings.maxDeletions, timeoutMinutes: settings.timeoutMinutes, force: options.force),
                        actions: actions, diagnostics: diagnostics)
        plan.configurationDigest = configuration.digest.isEmpty ? nil : configuration.digest
        if options.retireRemovedLabs { plan.settings.retireRemovedLabs = true }
        if options.scope != .whole { plan.scope = options.scope }
        return plan
    }
}
