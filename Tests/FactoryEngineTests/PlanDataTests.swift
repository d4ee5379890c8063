import FactoryEngine
import FactoryModel
import Foundation
import Testing

/// The plan as data: deterministic, self-consistent, saved and read back as JSON, and tied to the
/// inventory it came from by a fingerprint.
@Suite("Plan data and inventory fingerprint")
struct PlanDataTests {
    /// A factory where a bit of everything is going on, so a plan has every kind of action.
    static func busyFactory() throws -> (FactoryConfiguration, Inventory) {
        var fixture = PlannerTests.fixture(templates: [PlannerTests.datacenter, PlannerTests.sql, "Win2016R2/Datacenter.json"])
        fixture.labs.append(.init(subscriptionId: "33333333-3333-4333-8333-333333333333", resourceGroup: "rg-far", labName: "FarLab",
                                  location: "eastus", imagePaths: ["Win2016R2", "Win2016/Datacenter.json"]))
        fixture.labs.append(.init(subscriptionId: "44444444-4444-4444-8444-444444444444", resourceGroup: "rg-ghost", labName: "GhostLab",
                                  location: "westeurope", imagePaths: ["Win2016"]))
        var configuration = try fixture.load()
        // Two galleries: one to make (gallery, definition, version), one holding a retired template's definition.
        configuration.galleries = [
            GalleryTarget(subscriptionId: configuration.settings.subscriptionId, resourceGroup: "rg-images", galleryName: "New.Images", location: "westeurope",
                          imagePaths: ["Win2016/Datacenter.json"], images: [PlannerTests.datacenter], targetRegions: [GalleryRegion(name: "northeurope")]),
            GalleryTarget(subscriptionId: configuration.settings.subscriptionId, resourceGroup: "rg-images", galleryName: "Old.Images", location: "westeurope",
                          imagePaths: [PlannerTests.sql], images: [PlannerTests.sql]),
        ]
        var inventory = Observed.inventory(configuration)
        let oldGallery = configuration.galleries[1].id
        let oldDefinition = GalleryImageDefinition(id: GalleryImageDefinitionID(gallery: oldGallery, name: "Win2016-Old"), location: "westeurope", osType: .windows,
                                                   osState: .generalized, publisher: "ImageFactory", offer: "Win2016", sku: "Old", provisioningState: "Succeeded",
                                                   tags: [FactoryTag.managedBy: "ImageFactory", FactoryTag.factory: inventory.factory.id.resourceId.lowercased()])
        let oldVersion = GalleryImageVersion(id: GalleryImageVersionID(definition: oldDefinition.id, version: "2026.1001.120000"), location: "westeurope",
                                             provisioningState: "Succeeded", tags: [FactoryTag.imagePath: "Win2016/Old.json", FactoryTag.factory: inventory.factory.id.resourceId.lowercased()],
                                             targetRegions: [TargetRegion(name: "westeurope")], aggregatedReplicationState: "Completed",
                                             replication: [RegionReplication(region: "westeurope", state: "Completed", progress: 100)], createdAt: Observed.daysAgo(52))
        inventory.galleries = [
            GalleryInventory(key: configuration.galleries[0].key, gallery: nil),
            GalleryInventory(key: configuration.galleries[1].key,
                             gallery: Gallery(id: oldGallery, location: "westeurope", description: "", provisioningState: "Succeeded"),
                             definitions: [GalleryInventory.Definition(definition: oldDefinition, versions: [oldVersion])]),
        ]
        let ghost = inventory.labs.firstIndex { $0.lab?.id.name == "GhostLab" }!
        inventory.labs[ghost] = LabInventory(key: inventory.labs[ghost].key, lab: nil, problem: "Lab GhostLab was not found.", images: [], blobs: [])

        let datacenter = try #require(configuration.template(at: PlannerTests.datacenter))
        let sql = try #require(configuration.template(at: PlannerTests.sql))
        let r2 = try #require(configuration.template(at: "Win2016R2/Datacenter.json"))
        let dev = inventory.labInventory("DevLab").lab!
        // Datacenter changed since its three images; the SQL template is current; R2 has a VM to resume.
        for (name, age) in [("Win2016_Datacenter-Nov-1-2026", 21.0), ("Win2016_Datacenter-Nov-8-2026", 14.0), ("Win2016_Datacenter-Nov-15-2026", 7.0)] {
            inventory.addRecord(Observed.record(datacenter, name: name, at: Observed.daysAgo(age), sha: "0ldsha"))
            inventory.addImage(Observed.image(name, in: dev, path: datacenter.path, createdAt: Observed.daysAgo(age)), toLab: "DevLab")
        }
        inventory.addRecord(Observed.record(sql, name: "Win2016_SQLServer-2016-Express-Nov-1-2026", at: Observed.daysAgo(21)))
        inventory.addImage(Observed.image("Win2016_SQLServer-2016-Express-Nov-1-2026", in: dev, path: sql.path, createdAt: Observed.daysAgo(21),
                                          state: "Failed"), toLab: "DevLab")
        inventory.addImage(Observed.image("Win2016_SQLServer-2016-Express-Nov-1-2026", in: inventory.labInventory("QALab").lab!, path: sql.path,
                                          createdAt: Observed.daysAgo(21)), toLab: "QALab")
        inventory.addImage(Observed.image("Handmade", in: dev, path: nil, createdAt: Observed.daysAgo(100)), toLab: "DevLab")
        // A removed template, a record without its VHD, an orphan VHD.
        var gone = datacenter
        gone.path = "Win2016/Old.json"
        inventory.addRecord(Observed.record(gone, name: "Win2016_Old-Oct-1-2026", at: Observed.daysAgo(52)))
        inventory.addImage(Observed.image("Win2016_Old-Oct-1-2026", in: dev, path: gone.path, createdAt: Observed.daysAgo(52)), toLab: "DevLab")
        inventory.records.append(Observed.record(sql, name: "Win2016_SQLServer-2016-Express-Oct-1-2026", at: Observed.daysAgo(52)))
        inventory.factoryBlobs.append(Observed.blob("Orphan-Oct-1-2026.vhd", account: inventory.factory.storageAccount))
        // Factory VMs: stale Datacenter VM, resumable R2 VM, one ignored, one unknown.
        inventory.factoryVMs = [
            Observed.vm(datacenter.vmName, in: inventory.factory, tags: [FactoryTag.imagePath: datacenter.path, FactoryTag.templateSha: "0ldsha"]),
            Observed.vm(r2.vmName, in: inventory.factory, tags: [FactoryTag.imagePath: r2.path, FactoryTag.templateSha: r2.blobSha]),
            Observed.vm("Keeper", in: inventory.factory, tags: [FactoryTag.ignore: ""]),
            Observed.vm("Mystery", in: inventory.factory, tags: [:]),
        ]
        // Leftover temporary copies in a lab, and old deployments.
        let far = inventory.labs.firstIndex { $0.lab?.id.name == "FarLab" }!
        inventory.labs[far].blobs = [Observed.blob("Win2016R2_Datacenter-Oct-1-2026.vhd", account: inventory.labs[far].lab!.storageAccount, copyStatus: .aborted)]
        let s = configuration.settings
        inventory.deployments = (0..<3).map {
            Deployment(subscriptionId: s.subscriptionId, resourceGroup: s.resourceGroup, name: "imagefactory-x\($0)", provisioningState: "Succeeded",
                       timestamp: Observed.daysAgo(20 + Double($0)))
        }
        return (configuration, inventory)
    }

    static func plan(_ configuration: FactoryConfiguration, _ inventory: Inventory) -> Plan {
        FactoryPlanner.plan(configuration, inventory: inventory, options: PlanOptions(now: Observed.now))
    }

    @Test("the busy factory's plan uses every kind of action (so the tests below are not vacuous)")
    func busyPlanIsRich() throws {
        let (configuration, inventory) = try Self.busyFactory()
        let plan = Self.plan(configuration, inventory)
        let kinds = Set(plan.actions.map(\.kind))
        #expect(kinds == Set(ActionKind.allCases))
        #expect(plan.diagnostics.errors.contains { $0.message.contains("GhostLab") })
        #expect(plan.actions.contains { $0.crossRegion == true })
    }

    @Test("the plan is deterministic: the same inputs give an equal plan")
    func deterministic() throws {
        let (configuration, inventory) = try Self.busyFactory()
        let first = Self.plan(configuration, inventory)
        for _ in 0..<5 {
            let (configuration2, inventory2) = try Self.busyFactory()
            #expect(Self.plan(configuration2, inventory2) == first)
            #expect(try Self.plan(configuration, inventory).encoded() == first.encoded())
        }
    }

    @Test("the order in which the cloud lists resources does not change the plan")
    func listingOrderDoesNotMatter() throws {
        let (configuration, inventory) = try Self.busyFactory()
        let expected = Self.plan(configuration, inventory)
        var generator = SplitMix64(seed: 42)
        for _ in 0..<10 {
            var shuffled = inventory
            shuffled.records.shuffle(using: &generator)
            shuffled.factoryBlobs.shuffle(using: &generator)
            shuffled.factoryVMs.shuffle(using: &generator)
            shuffled.deployments.shuffle(using: &generator)
            for i in shuffled.labs.indices {
                shuffled.labs[i].images.shuffle(using: &generator)
                shuffled.labs[i].blobs.shuffle(using: &generator)
            }
            #expect(shuffled.fingerprint == inventory.fingerprint)
            #expect(Self.plan(configuration, shuffled) == expected)
        }
    }

    @Test("every dependsOn names an action of the plan in the same or an earlier stage, listed before it; ids are unique")
    func dependenciesAreConsistent() throws {
        let (configuration, inventory) = try Self.busyFactory()
        let plan = Self.plan(configuration, inventory)
        #expect(Set(plan.ids).count == plan.ids.count, "duplicate ids: \(plan.ids)")
        var seen: [String: PlanAction] = [:]
        var dependencies = 0
        for action in plan.actions {
            for dependency in action.dependsOn {
                dependencies += 1
                let target = seen[dependency]
                #expect(target != nil, "\(action.id) depends on \(dependency), which is not an earlier action of the plan")
                if let target { #expect(target.stage <= action.stage, "\(action.id) depends on a later stage") }
            }
            seen[action.id] = action
        }
        #expect(dependencies >= 10)
    }

    @Test("a plan of an older format is refused with a message, and a hand-edited one missing a payload is an input error, never a crash")
    func olderAndBrokenPlans() throws {
        let old = Data(#"{"formatVersion": 1, "actions": [{"id": "cleanup/vm/x", "kind": "deleteFactoryVM", "stage": "cleanup"}]}"#.utf8)
        let error = try #require(throws: FactoryError.self) { try Plan.decode(old) }
        #expect(error.description.contains("older imagefactory"), "\(error.description)")
        #expect(error.exitCode == .invalidInput)

        let (configuration, inventory) = try Self.busyFactory()
        var object = try #require(try JSONSerialization.jsonObject(with: Self.plan(configuration, inventory).encoded()) as? [String: Any])
        var actions = try #require(object["actions"] as? [[String: Any]])
        actions[0]["spec"] = nil
        object["actions"] = actions
        let edited = try JSONSerialization.data(withJSONObject: object)
        #expect(throws: DecodingError.self) { try Plan.decode(edited) }
    }

    @Test("two labs of the same name in two subscriptions get distinct action ids, so neither waits on the other's copy")
    func sameLabNameDistinctIDs() throws {
        let fixture = FactoryFixture(labs: [
            .init(subscriptionId: "11111111-1111-4111-8111-111111111111", resourceGroup: "rg-a", labName: "QALab", location: "westeurope", imagePaths: ["Linux"]),
            .init(subscriptionId: "22222222-2222-4222-8222-222222222222", resourceGroup: "rg-b", labName: "QALab", location: "westeurope", imagePaths: ["Linux"]),
        ], templates: ["Linux/Ubuntu.json": FactoryFixture.template(osType: .linux)])
        let configuration = try fixture.load()
        var inventory = Observed.inventory(configuration)
        let template = try #require(configuration.template(at: "Linux/Ubuntu.json"))
        let old = Observed.record(template, name: "Linux_Ubuntu-Oct-1-2026", at: Observed.daysAgo(60), sha: "old")
        inventory.addRecord(old)
        for i in inventory.labs.indices {
            inventory.labs[i].lab?.storageAccount.name += "\(i)"  // storage account names are unique in Azure
            let lab = try #require(inventory.labs[i].lab)
            inventory.labs[i].images.append(Observed.image("Linux_Ubuntu-Sep-1-2026", in: lab, path: "Linux/Ubuntu.json", createdAt: Observed.daysAgo(90)))
            inventory.labs[i].images.append(Observed.image("Linux_Ubuntu-Oct-1-2026", in: lab, path: "Linux/Ubuntu.json", createdAt: Observed.daysAgo(60)))
        }
        var settings = configuration
        settings.settings.imagesToSave = 1
        let plan = Self.plan(settings, inventory)
        #expect(Set(plan.ids).count == plan.ids.count, "duplicate ids: \(plan.ids)")
        let distributions = plan.actions(.distributeImage)
        #expect(distributions.count == 2)
        for retire in plan.actions(.retireImage) where retire.labID?.name == "QALab" {
            let copy = try #require(distributions.first { $0.labID?.key == retire.labID?.key })
            #expect(retire.dependsOn == [copy.id], "a lab's retirement waits for its own copy")
        }
        #expect(plan.actions(.retireImage).filter { $0.labID?.name == "QALab" }.count == 4, "not vacuous: both labs retire their old images")
    }

    @Test("a lab's temporary container is removed after every copy into it, whatever the copies' outcome")
    func containerWaitsForItsCopies() throws {
        let (configuration, inventory) = try Self.busyFactory()
        let plan = Self.plan(configuration, inventory)
        let containers = plan.actions(.deleteTemporaryContainer).filter { !$0.after.isEmpty }
        #expect(!containers.isEmpty, "the busy factory copies into some lab")
        for container in containers {
            let copies = plan.actions.filter { ($0.kind == .distributeImage || $0.kind == .repairImage) && $0.labID?.key == container.labID?.key }
            #expect(Set(container.after) == Set(copies.map(\.id)))
            #expect(container.dependsOn.isEmpty, "ordering only: a failed copy does not keep its container")
        }
    }

    @Test("a plan round-trips through its JSON form")
    func jsonRoundTrip() throws {
        let (configuration, inventory) = try Self.busyFactory()
        let plan = Self.plan(configuration, inventory)
        let data = try plan.encoded()
        let decoded = try Plan.decode(data)
        #expect(decoded == plan)
        #expect(decoded.formatVersion == Plan.currentFormatVersion)
        #expect(try decoded.encoded() == data)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["formatVersion"] as? Int == 2)
        #expect(object["inventoryFingerprint"] as? String == inventory.fingerprint)
        #expect(object["commit"] as? String == configuration.commit)
    }

    @Test("a plan with a newer format version, or none, is refused with a clear error")
    func unknownFormatVersionIsRefused() throws {
        let (configuration, inventory) = try Self.busyFactory()
        var object = try #require(try JSONSerialization.jsonObject(with: Self.plan(configuration, inventory).encoded()) as? [String: Any])
        object["formatVersion"] = 99
        let newer = try JSONSerialization.data(withJSONObject: object)
        let error = try #require(throws: FactoryError.self) { try Plan.decode(newer) }
        #expect(error.exitCode == .invalidInput)
        #expect(error.description.contains("format version 99"))

        object.removeValue(forKey: "formatVersion")
        let none = try JSONSerialization.data(withJSONObject: object)
        let noVersion = try #require(throws: FactoryError.self) { try Plan.decode(none) }
        #expect(noVersion.description.contains("not an imagefactory plan"))
    }

    @Test("the inventory fingerprint changes when anything a plan acts on changes, and only then")
    func fingerprint() throws {
        let (_, inventory) = try Self.busyFactory()
        let (_, again) = try Self.busyFactory()
        #expect(inventory.fingerprint == again.fingerprint)
        #expect(inventory.fingerprint.count >= 32)

        var added = inventory
        added.addImage(Observed.image("Win2016_Datacenter-Nov-20-2026", in: added.labInventory("QALab").lab!, path: PlannerTests.datacenter,
                                      createdAt: Observed.daysAgo(2)), toLab: "QALab")
        #expect(added.fingerprint != inventory.fingerprint)

        var failed = inventory
        let qa = failed.labs.firstIndex { $0.lab?.id.name == "QALab" }!
        failed.labs[qa].images[0].provisioningState = "Failed"
        #expect(failed.fingerprint != inventory.fingerprint)

        var retagged = inventory
        retagged.factoryVMs[3].tags[FactoryTag.ignore] = "true"
        #expect(retagged.fingerprint != inventory.fingerprint)

        var hinted = inventory
        hinted.labs[qa].images[0].retryAfter = 12
        hinted.factoryVMs[0].retryAfter = 3
        #expect(hinted.fingerprint == inventory.fingerprint, "retry hints are volatile and left out")
    }
}
