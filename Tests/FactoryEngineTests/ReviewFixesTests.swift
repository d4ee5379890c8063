import FactoryModel
import Foundation
import LocalCloud
import Testing
@testable import FactoryEngine

/// Safety cases found in review: each test failed before its fix.
struct ReviewFixesTests {
    static let devLab = FactoryFixture.LabEntry(subscriptionId: "11111111-1111-4111-8111-111111111111", resourceGroup: "rg-dev",
                                                labName: "DevLab", location: "westeurope", imagePaths: ["Windows"])

    static func fixture(osState: OSState? = nil) -> FactoryFixture {
        FactoryFixture(labs: [devLab], templates: [
            "Windows/Datacenter.json": FactoryFixture.template(notes: "Windows Server Datacenter", artifacts: ["windows-7zip"], osState: osState),
        ])
    }

    @Test("a factory record this version cannot read still owns its VHD: the VHD is never planned for deletion")
    func unreadableRecordProtectsItsVHD() throws {
        let configuration = try Self.fixture().load()
        var inventory = Observed.inventory(configuration)
        let account = inventory.factory.storageAccount
        inventory.factoryBlobs.append(Observed.blob("Mystery-Nov-1-2026.json", account: account))
        inventory.factoryBlobs.append(Observed.blob("Mystery-Nov-1-2026.vhd", account: account))
        let plan = FactoryPlanner.plan(configuration, inventory: inventory, options: PlanOptions(now: Observed.now))
        #expect(!plan.actions.contains { $0.resource?.hasSuffix("Mystery-Nov-1-2026.vhd") == true }, "\(plan.actions.map(\.id))")
        #expect(!plan.actions.contains { $0.resource?.hasSuffix("Mystery-Nov-1-2026.json") == true })
    }

    @Test("the factory lab listed in Labs.json is a configuration error")
    func factoryLabInLabsJSONIsRejected() throws {
        var fixture = Self.fixture()
        fixture.labs.append(FactoryFixture.LabEntry(subscriptionId: FactoryFixture.factorySubscription, resourceGroup: "rg-factory",
                                                     labName: "imagefactory", location: "westeurope", imagePaths: ["Windows"]))
        let configuration = ConfigurationLoader.load(try InMemoryConfigSource(commit: fixture.commit, files: fixture.files).load())
        #expect(configuration.diagnostics.errors.contains { $0.message.contains("is the factory lab") && $0.file == "Configuration/Labs.json" })
    }

    @Test("a lab image with the factory's name but not its tag is never repaired or replaced")
    func foreignImageWithTheNameIsLeftAlone() throws {
        let configuration = try Self.fixture().load()
        var inventory = Observed.inventory(configuration)
        let template = try #require(configuration.template(at: "Windows/Datacenter.json"))
        inventory.addRecord(Observed.record(template, name: "Windows_Datacenter-Nov-1-2026", at: Observed.daysAgo(21)))
        let dev = inventory.labInventory("DevLab").lab!
        inventory.addImage(Observed.image("Windows_Datacenter-Nov-1-2026", in: dev, path: nil, createdAt: Observed.daysAgo(3), state: "Failed"), toLab: "DevLab")
        let plan = FactoryPlanner.plan(configuration, inventory: inventory, options: PlanOptions(now: Observed.now))
        #expect(plan.actions(.repairImage).isEmpty)
        #expect(plan.actions(.distributeImage).isEmpty)
        #expect(plan.diagnostics.errors.contains { $0.message.contains("did not make") })
    }

    @Test("running only the retire stage deletes nothing whose replacement was not made in this run")
    func retireAloneWaitsForItsReplacement() async throws {
        var fixture = Self.fixture()
        fixture.settings["imagesToSave"] = 1
        let factory = try await LocalFactory(fixture)
        try #require(try await factory.run("first").failed.isEmpty)
        let before = try await factory.imageNames("DevLab")
        #expect(before.count == 1)
        // The template changes: a new image is due, and retention would keep only it.
        fixture.templates["Windows/Datacenter.json"] = FactoryFixture.template(notes: "Changed", artifacts: ["windows-7zip", "windows-git"])
        fixture.commit = "c0ffee0000000000000000000000000000000002"
        factory.configuration = try fixture.load()
        let runner = factory.runner()
        let (plan, _) = try await runner.plan()
        #expect(!plan.actions(.retireImage).isEmpty && !plan.actions(.retireRecord).isEmpty, "not vacuous: retention has work")
        let summary = try await runner.execute(plan, runID: "retire-only", stages: [.retire], requireSamePlanBasis: false, events: { _ in })
        #expect(summary.results.allSatisfy { $0.outcome == .skipped }, "\(summary.results.map { "\($0.action.id) \($0.outcome)" })")
        #expect(try await factory.imageNames("DevLab") == before)
        #expect(try await factory.records().count == 1)
    }

    @Test("a specialized VM adopted from an interrupted run is stopped, captured and delivered")
    func adoptedSpecializedVMIsFinished() async throws {
        let fixture = Self.fixture(osState: .specialized)
        let factory = try await LocalFactory(fixture)
        let template = try #require(factory.configuration.template(at: "Windows/Datacenter.json"))
        // A run killed right after deploying: the VM is running, tagged, never stopped.
        _ = try await factory.observer.deployVirtualMachine(VMDeploymentRequest(
            vm: VirtualMachineID(lab: factory.factoryLab, name: template.vmName), template: template.templateJSON, parameters: [:],
            artifacts: template.factoryArtifacts,
            tags: [FactoryTag.imagePath: template.path, FactoryTag.templateSha: template.blobSha, FactoryTag.runID: "killed"],
            deploymentName: "imagefactory-killed"))
        let (plan, _) = try await factory.runner().plan()
        #expect(plan.actions(.buildVM).isEmpty && plan.actions(.captureImage).count == 1, "the VM is adopted, not rebuilt")
        let summary = try await factory.runner().execute(plan, runID: "resume", stages: Set(Stage.allCases), requireSamePlanBasis: false, events: { _ in })
        #expect(summary.failed.isEmpty, "\(summary.failed.map { "\($0.action.id): \($0.message ?? "")" })")
        #expect(try await factory.imageNames("DevLab").count == 1)
        #expect(try await factory.observer.listVirtualMachines(lab: factory.factoryLab).isEmpty)
    }

    @Test("apply refuses a saved plan when the configuration changed, even without a commit (working tree)")
    func applyRefusesChangedWorkingTree() async throws {
        var fixture = Self.fixture()
        fixture.commit = nil
        let factory = try await LocalFactory(fixture)
        let (plan, _) = try await factory.runner().plan()
        #expect(plan.configurationDigest != nil)
        fixture.templates["Windows/Datacenter.json"] = FactoryFixture.template(notes: "Edited after planning")
        factory.configuration = try fixture.load()
        let error = try await #require(throws: FactoryError.self) {
            try await factory.runner().execute(plan, runID: "apply", stages: Set(Stage.allCases), requireSamePlanBasis: true, events: { _ in })
        }
        #expect(error.exitCode == .invalidInput)
        #expect(error.description.contains("configuration changed"))
        #expect(try await factory.observer.listVirtualMachines(lab: factory.factoryLab).isEmpty)
    }
}
