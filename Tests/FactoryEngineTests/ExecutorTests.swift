import FactoryEngine
import FactoryModel
import Foundation
import LocalCloud
import Testing

/// The executor end to end on a real local cloud in a temporary directory.
@Suite("FactoryExecutor on the local cloud")
struct ExecutorTests {
    /// Six labs in the factory's region take one image: copies fan out as a tree.
    static func treeFixture() -> FactoryFixture {
        let labs = (1...6).map { i in
            FactoryFixture.LabEntry(subscriptionId: "11111111-1111-4111-8111-111111111111", resourceGroup: "rg-tree-\(i)", labName: "TreeLab\(i)",
                                    location: "westeurope", imagePaths: ["Linux/Ubuntu.json"])
        }
        return FactoryFixture(labs: labs, templates: ["Linux/Ubuntu.json": FactoryFixture.template(osType: .linux, notes: "Ubuntu server")])
    }

    @Test("copies fan out as a tree: later labs read earlier labs' copies, every lab gets the image, and no temporary copy is left")
    func treeCopies() async throws {
        let factory = try await LocalFactory(Self.treeFixture())
        let (plan, _) = try await factory.runner().plan()
        let copies = plan.actions.filter { $0.kind == .distributeImage }
        #expect(copies.count == 6)
        let fromLabs = copies.filter { action in
            if case .distributeImage(let spec) = action.operation { return spec.sourceCandidates != nil }
            return false
        }
        #expect(fromLabs.count == 3, "the factory seeds copies 1, 2 and 4; copies 3, 5 and 6 read earlier labs' copies (a binomial tree)")
        #expect(copies.allSatisfy { action in
            guard case .distributeImage(let spec) = action.operation else { return false }
            return spec.sourceCandidates.map { $0.last == spec.source } ?? true
        }, "the factory's VHD is always the last resort")
        let summary = try await factory.run("tree-1")
        #expect(summary.succeeded, "\(summary.failed.map { "\($0.action.id): \($0.message ?? "")" })")
        for i in 1...6 {
            #expect(Self.bases(try await factory.imageNames("TreeLab\(i)")) == ["Linux_Ubuntu"])
            #expect(try await factory.blobs("TreeLab\(i)").isEmpty, "TreeLab\(i)'s temporary copy is cleaned up")
        }
    }

    @Test("disks whose SAS shows no Content-MD5 (Azure promises none) still make images: copies are checked by copy status and size")
    func exportWithoutContentMD5() async throws {
        let factory = try await LocalFactory(Self.treeFixture(), disksHaveContentMD5: false)
        var notes: [String] = []
        let runner = factory.runner()
        let (plan, _) = try await runner.plan()
        let collected = NotesBox()
        let summary = try await runner.execute(plan, runID: "nomd5-1", stages: Set(Stage.allCases), requireSamePlanBasis: false, events: { event in
            if case .note(let text) = event { collected.append(text) }
        })
        notes = collected.all
        #expect(summary.succeeded, "\(summary.failed.map { "\($0.action.id): \($0.message ?? "")" })")
        #expect(notes.contains { $0.contains("no Content-MD5") }, "the run says why copies are not checked by MD5: \(notes)")
        for i in 1...6 {
            #expect(Self.bases(try await factory.imageNames("TreeLab\(i)")) == ["Linux_Ubuntu"])
        }
        let (again, _) = try await runner.plan()
        #expect(again.actions.isEmpty, "a rerun has nothing to do: \(again.actions.map(\.id))")
    }

    @Test("a parent whose copy is gone re-parents its children: they read the next source up")
    func treeReparents() async throws {
        let factory = try await LocalFactory(Self.treeFixture())
        let runner = factory.runner()
        let (plan, _) = try await runner.plan()
        // Build and capture, then let the first lab's distribution run alone and delete its copy, as if it had failed.
        _ = try await runner.execute(plan, runID: "tree-2", stages: [.build, .snap], requireSamePlanBasis: false, events: { _ in })
        let (next, _) = try await runner.plan()
        let readsFromLab = next.actions.filter { action in
            if case .distributeImage(let spec) = action.operation { return spec.sourceCandidates != nil }
            return false
        }
        #expect(!readsFromLab.isEmpty)
        // Every parent copy is missing (nothing distributed yet when the children start, as if the parents' copies failed):
        // run only the children's actions; each must fall back to the factory's VHD.
        let children = Plan(commit: next.commit, inventoryFingerprint: next.inventoryFingerprint, createdAt: next.createdAt, factory: next.factory,
                            settings: next.settings, actions: readsFromLab.map { var a = $0; a.after = []; return a }, diagnostics: [])
        let summary = try await runner.execute(children, runID: "tree-3", stages: [.distribute], requireSamePlanBasis: false, events: { _ in })
        #expect(summary.succeeded, "\(summary.failed.map { "\($0.action.id): \($0.message ?? "")" })")
        #expect(summary.results.count == readsFromLab.count)
    }

    static let devLab = FactoryFixture.LabEntry(subscriptionId: "11111111-1111-4111-8111-111111111111", resourceGroup: "rg-dev",
                                                labName: "DevLab", location: "westeurope", imagePaths: ["Windows", "Linux/Ubuntu.json"])
    static let trainingLab = FactoryFixture.LabEntry(subscriptionId: "22222222-2222-4222-8222-222222222222", resourceGroup: "rg-training",
                                                     labName: "TrainingLab", location: "northeurope", imagePaths: ["Windows/Datacenter.json"])

    /// Two Windows templates and a Linux one; DevLab takes everything, TrainingLab (another region) one image.
    static func fixture() -> FactoryFixture {
        FactoryFixture(labs: [devLab, trainingLab], templates: [
            "Windows/Datacenter.json": FactoryFixture.template(notes: "Windows Server Datacenter", artifacts: ["windows-7zip"]),
            "Windows/Developer.json": FactoryFixture.template(notes: "Developer box", artifacts: ["windows-vscode", "windows-git"]),
            "Linux/Ubuntu.json": FactoryFixture.template(osType: .linux, notes: "Ubuntu server"),
        ])
    }

    static let expectedDevImages = ["Linux_Ubuntu", "Windows_Datacenter", "Windows_Developer"]

    /// Image names without their date suffix.
    static func bases(_ names: [String]) -> [String] {
        names.map { name in
            let parts = name.split(separator: "-")
            return parts.count > 3 ? parts.dropLast(3).joined(separator: "-") : name
        }.sorted()
    }

    @Test("a full run distributes every image, byte for byte, and leaves no VM or temporary blob behind")
    func fullRun() async throws {
        let factory = try await LocalFactory(Self.fixture())
        let summary = try await factory.run("run-1")

        #expect(summary.failed.isEmpty, "\(summary.failed.map { "\($0.action.id): \($0.message ?? "")" })")
        #expect(summary.succeeded)
        #expect(summary.results(.distributeImage).count == 4)
        #expect(summary.results.allSatisfy { $0.outcome == .succeeded })

        let records = try await factory.records()
        #expect(records.map(\.imagePath).sorted() == ["Linux/Ubuntu.json", "Windows/Datacenter.json", "Windows/Developer.json"])
        #expect(records.allSatisfy { $0.runId == "run-1" && $0.commit == factory.configuration.commit && $0.md5 != nil })
        #expect(Self.bases(try await factory.imageNames("DevLab")) == Self.expectedDevImages)
        #expect(Self.bases(try await factory.imageNames("TrainingLab")) == ["Windows_Datacenter"])

        let factoryContainer = try await factory.container(of: "ImageFactory")
        for labName in ["DevLab", "TrainingLab"] {
            for image in try await factory.images(labName) {
                let record = try #require(records.first { $0.imageName == image.id.name })
                #expect(image.tags[FactoryTag.imagePath] == record.imagePath)
                #expect(image.tags[FactoryTag.runID] == "run-1")
                #expect(image.description == factory.configuration.template(at: record.imagePath)?.description)
                #expect(image.provisioningState == "Succeeded")
                let vhd = try Data(contentsOf: try await factory.cloud.blobFile(BlobID(container: factoryContainer, name: record.vhdFileName)))
                let imageFile = try #require(try await factory.cloud.customImageFile(image.id))
                let copied = try Data(contentsOf: imageFile)
                #expect(vhd.count > 1 << 20)
                #expect(copied == vhd, "the image in \(labName) differs from the captured VHD \(record.vhdFileName)")
                #expect(String(decoding: copied.prefix(23), as: UTF8.self) == "IMAGEFACTORY-LOCAL-DISK")
            }
        }
        // The captured disk holds what the template installed, generalized.
        let datacenter = try #require(records.first { $0.imagePath == "Windows/Datacenter.json" })
        let disk = try Data(contentsOf: try await factory.cloud.blobFile(BlobID(container: factoryContainer, name: datacenter.vhdFileName)))
        let manifest = String(decoding: disk.prefix(4096), as: UTF8.self)
        #expect(manifest.contains("windows-7zip") && manifest.contains("windows-sysprep"))

        #expect(try await factory.observer.listVirtualMachines(lab: factory.factoryLab).isEmpty)
        #expect(try await factory.blobs("DevLab").isEmpty)
        #expect(try await factory.blobs("TrainingLab").isEmpty)
    }

    @Test("after a full run the next plan is empty, and executing it writes nothing")
    func secondRunIsEmpty() async throws {
        let factory = try await LocalFactory(Self.fixture())
        let first = try await factory.run("run-1")
        #expect(first.succeeded)
        let writesBefore = try factory.operations().filter(\.write).count
        #expect(writesBefore > 10, "the first run wrote")

        let runner = factory.runner()
        let (plan, _) = try await runner.plan()
        #expect(plan.actions.isEmpty, "\(plan.actions.map { "\($0.id): \($0.reason)" })")
        #expect(!plan.diagnostics.hasErrors)
        let linesBefore = try factory.operations().count
        let summary = try await runner.execute(plan, runID: "run-2", stages: Set(Stage.allCases), requireSamePlanBasis: false, events: { _ in })
        #expect(summary.results.isEmpty)
        #expect(summary.succeeded)

        let operations = try factory.operations()
        #expect(operations.count == linesBefore, "executing an empty plan makes no requests at all")
        #expect(operations.filter(\.write).count == writesBefore)
        #expect(!operations.contains { $0.run == "run-2" })
        #expect(operations.contains { $0.run == "run-1" && $0.write })
    }

    @Test("a failing artifact fails its build with the artifact's message, deletes the VM, skips what depends on it")
    func failingArtifact() async throws {
        var fixture = Self.fixture()
        fixture.templates["Windows/Broken.json"] = FactoryFixture.template(notes: "Broken", artifacts: ["windows-7zip", "xyz-fails", "windows-git"])
        let factory = try await LocalFactory(fixture)
        let summary = try await factory.run("run-1")

        let build = try #require(summary.result("build/Windows/Broken.json"))
        #expect(build.outcome == .failed)
        let message = try #require(build.message)
        #expect(message.contains("Artifact 'xyz-fails' failed"), "\(message)")
        #expect(message.contains("deleted"))
        for id in ["snap/Windows/Broken.json", "distribute/DevLab/Windows/Broken.json", "cleanup/vm/Broken"] {
            let result = try #require(summary.result(id))
            #expect(result.outcome == .skipped, "\(id)")
            #expect(result.message?.contains("did not succeed") == true)
        }
        #expect(summary.failed.map(\.action.id) == ["build/Windows/Broken.json"])
        #expect(!summary.succeeded)
        #expect(summary.results.filter { $0.outcome == .succeeded }.count == summary.results.count - 4)

        #expect(try await factory.observer.listVirtualMachines(lab: factory.factoryLab).isEmpty, "the failed VM was deleted")
        #expect(Self.bases(try await factory.imageNames("DevLab")) == Self.expectedDevImages)
        #expect(!(try await factory.records()).contains { $0.imagePath == "Windows/Broken.json" })
    }

    @Test("copy faults fail the distribution with a clear message and leave no custom image or blob in the lab")
    func copyFaults() async throws {
        let factory = try await LocalFactory(Self.fixture(), faults: "seed=1;copy.copyFailure=1")
        let summary = try await factory.run("run-1")

        let distributions = summary.results(.distributeImage)
        #expect(distributions.count == 4)
        for result in distributions {
            #expect(result.outcome == .failed)
            let message = result.message ?? ""
            #expect(message.contains("CopyFailed"), "\(message)")
            #expect(message.contains("Copy of \(result.action.imageName!) to \(result.action.lab!)"), "\(message)")
            #expect(message.contains("failed part-way"), "\(message)")
        }
        #expect(summary.results(.captureImage).allSatisfy { $0.outcome == .succeeded }, "exports are not copies")
        #expect(try await factory.records().count == 3)
        for lab in ["DevLab", "TrainingLab"] {
            #expect(try await factory.images(lab).isEmpty)
            #expect(try await factory.blobs(lab).isEmpty, "the failed copy was deleted")
        }
    }

    @Test("transient faults are retried and the run still succeeds")
    func transientFaults() async throws {
        let factory = try await LocalFactory(Self.fixture(), faults: "seed=7;*.transient=0.3")
        let summary = try await factory.run("run-1")

        #expect(summary.failed.isEmpty, "\(summary.failed.map { "\($0.action.id): \($0.message ?? "")" })")
        #expect(Self.bases(try await factory.imageNames("DevLab")) == Self.expectedDevImages)
        #expect(Self.bases(try await factory.imageNames("TrainingLab")) == ["Windows_Datacenter"])
        let faults = try factory.operations().filter { $0.status == 503 }
        #expect(faults.count >= 5, "the faults happened: \(faults.count)")
        #expect(faults.contains { $0.write }, "writes were retried too")
    }

    @Test("no more than maxConcurrentJobs distributions run at once")
    func maxConcurrentJobs() async throws {
        let labs = (1...4).map {
            FactoryFixture.LabEntry(subscriptionId: "5555555\($0)-5555-4555-8555-555555555555", resourceGroup: "rg-\($0)", labName: "Lab\($0)",
                                    location: "westeurope", imagePaths: ["Linux"])
        }
        var fixture = FactoryFixture(labs: labs, templates: [
            "Linux/Ubuntu.json": FactoryFixture.template(osType: .linux, notes: "Ubuntu"),
            "Linux/Debian.json": FactoryFixture.template(osType: .linux, notes: "Debian"),
        ])
        fixture.settings["maxConcurrentJobs"] = 2
        let factory = try await LocalFactory(fixture, latency: .fast)
        let summary = try await factory.run("run-1")
        #expect(summary.failed.isEmpty)

        var intervals: [String: (start: Date, end: Date)] = [:]
        for entry in try factory.operations() where entry.run == "run-1" && entry.job?.hasPrefix("distribute/") == true {
            let job = entry.job!
            let current = intervals[job] ?? (entry.startDate, entry.endDate)
            intervals[job] = (min(current.start, entry.startDate), max(current.end, entry.endDate))
        }
        #expect(intervals.count == 8)
        var peak = 0
        for (_, candidate) in intervals {
            let overlapping = intervals.values.filter { $0.start <= candidate.start && candidate.start < $0.end }.count
            peak = max(peak, overlapping)
        }
        #expect(peak <= 2, "\(peak) distribute jobs overlapped")
        #expect(peak == 2, "the limit was used: jobs did run two at a time")
    }

    @Test("retention over three runs with changed templates keeps imagesToSave images per path, in the factory and every lab")
    func retentionOverThreeRuns() async throws {
        var fixture = Self.fixture()
        let factory = try await LocalFactory(fixture)
        var made: [[String: String]] = []  // per run: image path -> image captured
        for revision in 1...3 {
            fixture.templates["Windows/Datacenter.json"] = FactoryFixture.template(notes: "Datacenter, revision \(revision)", artifacts: ["windows-7zip"])
            fixture.templates["Linux/Ubuntu.json"] = FactoryFixture.template(osType: .linux, notes: "Ubuntu, revision \(revision)")
            factory.configuration = try fixture.load()
            let summary = try await factory.run("run-\(revision)")
            #expect(summary.failed.isEmpty, "run \(revision): \(summary.failed.map { "\($0.action.id): \($0.message ?? "")" })")
            made.append(Dictionary(uniqueKeysWithValues: summary.results(.captureImage).map { ($0.action.imagePath!, $0.action.imageName!) }))
        }
        #expect(made.map(\.count) == [3, 2, 2], "run 1 makes every image, later runs only the changed ones")

        let records = try await factory.records()
        let byPath = Dictionary(grouping: records, by: \.imagePath).mapValues { $0.map(\.imageName).sorted() }
        #expect(byPath["Windows/Developer.json"]?.count == 1)
        for path in ["Windows/Datacenter.json", "Linux/Ubuntu.json"] {
            let kept = try #require(byPath[path])
            let newest = try [#require(made[1][path]), #require(made[2][path])].sorted()
            #expect(kept == newest, "\(path): kept \(kept)")
            #expect(Set(newest + [made[0][path]!]).count == 3, "each run made a differently named image")
        }
        let dev = try await factory.images("DevLab")
        let devByPath = Dictionary(grouping: dev, by: { $0.tags[FactoryTag.imagePath] ?? "-" }).mapValues { Set($0.map(\.id.name)) }
        #expect(devByPath["Windows/Datacenter.json"] == Set(byPath["Windows/Datacenter.json"]!))
        #expect(devByPath["Linux/Ubuntu.json"] == Set(byPath["Linux/Ubuntu.json"]!))
        #expect(devByPath["Windows/Developer.json"]?.count == 1)
        #expect(Set(try await factory.imageNames("TrainingLab")) == Set(byPath["Windows/Datacenter.json"]!))
        let factoryContainer = try await factory.container(of: "ImageFactory")
        let vhds = try await factory.observer.listBlobs(container: factoryContainer, prefix: nil).map(\.id.name).filter { $0.hasSuffix(".vhd") }
        #expect(Set(vhds) == Set(records.map(\.vhdFileName)), "retired records took their VHDs with them")
    }

    @Test("an image added by hand without the ImagePath tag survives every run")
    func handMadeImageSurvives() async throws {
        var fixture = Self.fixture()
        fixture.settings["imagesToSave"] = 1
        let factory = try await LocalFactory(fixture)
        try await factory.addImageByHand("Windows_Datacenter-Jan-1-2020", lab: "DevLab", tags: ["Owner": "alice"])
        try await factory.addImageByHand("Linux_Ubuntu-Jan-1-2020", lab: "TrainingLab", tags: [:])
        for revision in 1...3 {
            fixture.templates["Windows/Datacenter.json"] = FactoryFixture.template(notes: "Datacenter, revision \(revision)")
            fixture.templates["Linux/Ubuntu.json"] = FactoryFixture.template(osType: .linux, notes: "Ubuntu, revision \(revision)")
            if revision == 3 {
                fixture.templates["Linux/Ubuntu.json"] = nil  // a removed template retires its images, but never untagged ones
                fixture.labs[0].imagePaths = ["Windows"]
            }
            factory.configuration = try fixture.load()
            let summary = try await factory.run("run-\(revision)")
            #expect(summary.failed.isEmpty, "run \(revision): \(summary.failed.map { "\($0.action.id): \($0.message ?? "")" })")
            #expect(try await factory.imageNames("DevLab").contains("Windows_Datacenter-Jan-1-2020"), "after run \(revision)")
            #expect(try await factory.imageNames("TrainingLab").contains("Linux_Ubuntu-Jan-1-2020"), "after run \(revision)")
        }
        let dev = try await factory.images("DevLab")
        #expect(dev.filter { $0.tags[FactoryTag.imagePath] == "Windows/Datacenter.json" }.count == 1, "imagesToSave 1")
        #expect(!dev.contains { $0.tags[FactoryTag.imagePath] == "Linux/Ubuntu.json" }, "the removed template's images were retired")
    }

    @Test("a plan exceeding maxDeletions runs everything but the deletions")
    func maxDeletionsBlocksRetirement() async throws {
        var fixture = Self.fixture()
        let factory = try await LocalFactory(fixture)
        #expect(try await factory.run("run-1").succeeded)
        let before = try await factory.imageNames("DevLab")

        fixture.templates["Windows/Developer.json"] = nil
        fixture.templates["Windows/Datacenter.json"] = FactoryFixture.template(notes: "Datacenter, revision 2", artifacts: ["windows-7zip"])
        fixture.settings["maxDeletions"] = 1
        factory.configuration = try fixture.load()
        let summary = try await factory.run("run-2")

        #expect(summary.diagnostics.errors.contains { $0.message.contains("more than --max-deletions 1") })
        #expect(!summary.succeeded)
        let deletions = summary.results.filter(\.action.deletesImage)
        #expect(deletions.count == 2, "the Developer record and DevLab's Developer image")
        #expect(deletions.allSatisfy { $0.outcome == .skipped && $0.message?.contains("max-deletions") == true })
        #expect(summary.results(.distributeImage).count == 2)
        #expect(summary.results(.distributeImage).allSatisfy { $0.outcome == .succeeded }, "the rest of the run went ahead")
        let after = try await factory.imageNames("DevLab")
        #expect(Set(before).isSubset(of: Set(after)), "no image was deleted")
        #expect(after.count == before.count + 1)
        #expect(try await factory.records().contains { $0.imagePath == "Windows/Developer.json" })
    }

    @Test("a stale factory VM is deleted before the new one is built, and a failed replacement skips the build")
    func staleVMIsReplacedFirst() async throws {
        var lab = Self.devLab
        lab.imagePaths = ["Windows"]
        let fixture = FactoryFixture(labs: [lab], templates: ["Windows/Datacenter.json": FactoryFixture.template(notes: "v2")])
        let factory = try await LocalFactory(fixture)
        let template = try #require(factory.configuration.template(at: "Windows/Datacenter.json"))
        // A VM of an older version of the template, left by a killed run.
        let stale = VMDeploymentRequest(vm: VirtualMachineID(lab: factory.factoryLab, name: template.vmName), template: template.templateJSON,
                                        parameters: [:], artifacts: template.factoryArtifacts,
                                        tags: [FactoryTag.imagePath: template.path, FactoryTag.templateSha: "0ldsha"], deploymentName: "imagefactory-old")
        _ = try await factory.cloud.deployVirtualMachine(stale)

        let summary = try await factory.run("run-1")
        #expect(summary.result("build/replace/\(template.vmName)")?.outcome == .succeeded)
        #expect(summary.result("build/Windows/Datacenter.json")?.outcome == .succeeded,
                "\(summary.result("build/Windows/Datacenter.json")?.message ?? "")")
        #expect(summary.failed.isEmpty)
        #expect(try await factory.records().first?.templateBlobSha == template.blobSha)

        // Same again where the deletion fails: the build must wait for it and be skipped, not race it.
        let failing = try await LocalFactory(fixture, faults: "seed=3;vmDelete.transient=1")
        _ = try await failing.cloud.deployVirtualMachine(stale)
        let inventory = try await failing.runner().inventory()
        let plan = FactoryPlanner.plan(failing.configuration, inventory: inventory)
        let quickRetry = RetryPolicy(maxAttempts: 2, baseDelay: 0.01, maxDelay: 0.02, defaultPollInterval: 0.05, maxPollInterval: 0.1)
        let executor = FactoryExecutor(client: CloudClient(backend: failing.cloud, retry: quickRetry), options: ExecutionOptions(runID: "run-f"))
        let result = try await executor.execute(plan)
        #expect(result.result("build/replace/\(template.vmName)")?.outcome == .failed)
        let build = try #require(result.result("build/Windows/Datacenter.json"))
        #expect(build.outcome == .skipped, "the build ran while the stale VM was still there: \(build.message ?? "")")
    }
}

/// Notes a run printed, collected from its event callback (called from many jobs).
final class NotesBox: @unchecked Sendable {
    // @unchecked: `texts` is only touched under `lock`.
    private let lock = NSLock()
    private var texts: [String] = []
    func append(_ text: String) { lock.withLock { texts.append(text) } }
    var all: [String] { lock.withLock { texts } }
}
