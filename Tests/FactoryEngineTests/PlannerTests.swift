import FactoryEngine
import FactoryModel
import Foundation
import Testing

/// The planner on hand-built inventories: what each observed situation turns into.
@Suite("FactoryPlanner")
struct PlannerTests {
    static let datacenter = "Win2016/Datacenter.json"
    static let sql = "Win2016/SQLServer 2016 Express.json"

    /// DevLab subscribes to the Win2016 folder, QALab to the Datacenter template only; both in the factory's region.
    static func fixture(templates: [String] = [datacenter], settings: [String: Any] = [:]) -> FactoryFixture {
        var fixture = FactoryFixture(
            labs: [
                .init(subscriptionId: "11111111-1111-4111-8111-111111111111", resourceGroup: "rg-dev", labName: "DevLab",
                      location: "westeurope", imagePaths: ["Win2016"]),
                .init(subscriptionId: "22222222-2222-4222-8222-222222222222", resourceGroup: "rg-qa", labName: "QALab",
                      location: "westeurope", imagePaths: [datacenter]),
            ],
            templates: Dictionary(uniqueKeysWithValues: templates.map { ($0, FactoryFixture.template(notes: "Golden \($0)")) }))
        for (key, value) in settings { fixture.settings[key] = value }
        return fixture
    }

    static func plan(_ configuration: FactoryConfiguration, _ inventory: Inventory, force: Bool = false) -> Plan {
        FactoryPlanner.plan(configuration, inventory: inventory, options: PlanOptions(force: force, now: Observed.now))
    }

    // MARK: Build, capture, distribute

    @Test("a new template is built, captured, distributed to every subscribing lab, and its VM deleted")
    func newTemplate() throws {
        let configuration = try Self.fixture().load()
        let inventory = Observed.inventory(configuration)
        let plan = Self.plan(configuration, inventory)

        let name = "Win2016_Datacenter-\(Observed.today)"
        let build = "build/\(Self.datacenter)", snap = "snap/\(Self.datacenter)"
        #expect(plan.actions.map { "\($0.kind.rawValue) \($0.id)" } == [
            "buildVM \(build)",
            "captureImage \(snap)",
            "distributeImage distribute/DevLab/\(Self.datacenter)",
            "distributeImage distribute/QALab/\(Self.datacenter)",
            "deleteFactoryVM cleanup/vm/Datacenter",
            "deleteTemporaryContainer cleanup/container/\(inventory.labInventory("DevLab").lab!.storageAccount.name)",
            "deleteTemporaryContainer cleanup/container/\(inventory.labInventory("QALab").lab!.storageAccount.name)",
        ])
        let buildAction = try #require(plan.action(build))
        #expect(buildAction.stage == .build)
        #expect(buildAction.vmName == "Datacenter")
        #expect(buildAction.reason.contains("new template"))
        #expect(buildAction.dependsOn.isEmpty)
        #expect(plan.action(snap)?.dependsOn == [build])
        #expect(plan.action(snap)?.imageName == name)
        for lab in ["DevLab", "QALab"] {
            let distribute = try #require(plan.action("distribute/\(lab)/\(Self.datacenter)"))
            #expect(distribute.imageName == name)
            #expect(distribute.dependsOn == [snap])
            #expect(distribute.labID?.name == lab)
            #expect(distribute.crossRegion == false)
            #expect(distribute.resource == "a\(lab.lowercased())storage/imagefactoryvhds/\(name).vhd")
        }
        #expect(plan.action("cleanup/vm/Datacenter")?.dependsOn == [snap])
        #expect(!plan.diagnostics.hasErrors)
        #expect(plan.commit == configuration.commit)
        #expect(plan.inventoryFingerprint == inventory.fingerprint)
        #expect(plan.createdAt == Observed.now)
        #expect(plan.deletionCount == 0)
    }

    @Test("an unchanged template is not rebuilt; only a lab missing its image gets a distribution")
    func unchangedTemplate() throws {
        let configuration = try Self.fixture().load()
        let template = try #require(configuration.template(at: Self.datacenter))
        var inventory = Observed.inventory(configuration)
        let existing = "Win2016_Datacenter-Nov-1-2026"
        inventory.addRecord(Observed.record(template, name: existing, at: Observed.daysAgo(21)))
        inventory.addImage(Observed.image(existing, in: inventory.labInventory("DevLab").lab!, path: Self.datacenter,
                                          createdAt: Observed.daysAgo(21)), toLab: "DevLab")
        let plan = Self.plan(configuration, inventory)

        #expect(plan.ids == ["distribute/QALab/\(Self.datacenter)", "cleanup/container/\(inventory.labInventory("QALab").lab!.storageAccount.name)"])
        let distribute = try #require(plan.actions.first)
        #expect(distribute.kind == .distributeImage)
        #expect(distribute.imageName == existing)
        #expect(distribute.dependsOn.isEmpty)
        #expect(distribute.reason.contains("lacks \(existing)"))
        #expect(plan.actions(.buildVM).isEmpty && plan.actions(.captureImage).isEmpty)
    }

    @Test("a changed template (another blob SHA) is rebuilt")
    func changedTemplate() throws {
        let configuration = try Self.fixture().load()
        let template = try #require(configuration.template(at: Self.datacenter))
        var inventory = Observed.inventory(configuration)
        inventory.addRecord(Observed.record(template, name: "Win2016_Datacenter-Nov-1-2026", at: Observed.daysAgo(21), sha: "0ldsha0000"))
        let plan = Self.plan(configuration, inventory)

        let build = try #require(plan.action("build/\(Self.datacenter)"))
        #expect(build.reason.contains("template changed"))
        #expect(plan.actions(.distributeImage).allSatisfy { $0.imageName == "Win2016_Datacenter-\(Observed.today)" })
        #expect(plan.actions(.distributeImage).count == 2)
    }

    @Test("--force rebuilds an unchanged template under a fresh name, even when one was made earlier today")
    func forceRebuilds() throws {
        let configuration = try Self.fixture().load()
        let template = try #require(configuration.template(at: Self.datacenter))
        var inventory = Observed.inventory(configuration)
        let earlier = "Win2016_Datacenter-\(Observed.today)"
        inventory.addRecord(Observed.record(template, name: earlier, at: Observed.now.addingTimeInterval(-3600)))
        for lab in ["DevLab", "QALab"] {
            inventory.addImage(Observed.image(earlier, in: inventory.labInventory(lab).lab!, path: Self.datacenter,
                                              createdAt: Observed.now.addingTimeInterval(-3000)), toLab: lab)
        }
        #expect(Self.plan(configuration, inventory).actions.isEmpty, "without --force everything is up to date")

        let plan = Self.plan(configuration, inventory, force: true)
        let build = try #require(plan.action("build/\(Self.datacenter)"))
        #expect(build.reason.contains("--force"))
        #expect(plan.settings.force)
        let fresh = earlier + "A"
        #expect(plan.action("snap/\(Self.datacenter)")?.imageName == fresh)
        #expect(plan.actions(.distributeImage).map(\.imageName) == [fresh, fresh])
        #expect(plan.actions(.retireImage).isEmpty, "two images per path (the earlier and the new) are within imagesToSave 2")
    }

    @Test("a lab image in Failed state is repaired: deleted and made again")
    func failedImageIsRepaired() throws {
        let configuration = try Self.fixture().load()
        let template = try #require(configuration.template(at: Self.datacenter))
        var inventory = Observed.inventory(configuration)
        let name = "Win2016_Datacenter-Nov-1-2026"
        inventory.addRecord(Observed.record(template, name: name, at: Observed.daysAgo(21)))
        inventory.addImage(Observed.image(name, in: inventory.labInventory("DevLab").lab!, path: Self.datacenter,
                                          createdAt: Observed.daysAgo(20), state: "Failed"), toLab: "DevLab")
        inventory.addImage(Observed.image(name, in: inventory.labInventory("QALab").lab!, path: Self.datacenter,
                                          createdAt: Observed.daysAgo(20)), toLab: "QALab")
        let plan = Self.plan(configuration, inventory)

        #expect(plan.ids == ["distribute/DevLab/\(Self.datacenter)", "cleanup/container/\(inventory.labInventory("DevLab").lab!.storageAccount.name)"])
        let repair = try #require(plan.actions.first)
        #expect(repair.kind == .repairImage)
        #expect(repair.imageName == name)
        #expect(repair.reason.contains("failed copy"))
        #expect(!repair.deletesImage, "a repair is not counted as a retirement")
    }

    @Test("a half-made temporary copy of the image in a lab is covered by the distribution; other leftovers are deleted")
    func halfMadeBlobIsCovered() throws {
        let configuration = try Self.fixture().load()
        let template = try #require(configuration.template(at: Self.datacenter))
        var inventory = Observed.inventory(configuration)
        let name = "Win2016_Datacenter-Nov-1-2026"
        inventory.addRecord(Observed.record(template, name: name, at: Observed.daysAgo(21)))
        let dev = inventory.labInventory("DevLab").lab!
        let i = inventory.labs.firstIndex { $0.lab?.id.name == "DevLab" }!
        inventory.labs[i].blobs = [
            Observed.blob(name + ".vhd", account: dev.storageAccount, copyStatus: .failed, md5: nil),
            Observed.blob("Leftover-Oct-1-2026.vhd", account: dev.storageAccount, copyStatus: .success),
        ]
        let plan = Self.plan(configuration, inventory)

        let distribute = try #require(plan.action("distribute/DevLab/\(Self.datacenter)"))
        #expect(distribute.kind == .distributeImage)
        #expect(distribute.reason.contains("half-made"))
        let deletions = plan.actions(.deleteTemporaryBlob)
        #expect(deletions.map(\.resource) == ["\(dev.storageAccount.name)/imagefactoryvhds/Leftover-Oct-1-2026.vhd"])
        #expect(deletions.first?.labID == dev.id)
        #expect(plan.action("distribute/QALab/\(Self.datacenter)")?.reason.contains("half-made") == false)
    }

    @Test("a lab that does not exist is an error at its Labs.json entry, and nothing is planned for it")
    func missingLab() throws {
        let configuration = try Self.fixture().load()
        var inventory = Observed.inventory(configuration)
        let i = inventory.labs.firstIndex { $0.lab?.id.name == "QALab" }!
        inventory.labs[i] = LabInventory(key: inventory.labs[i].key, lab: nil, problem: "Lab QALab was not found in subscription 2222.",
                                         images: [], blobs: [])
        let plan = Self.plan(configuration, inventory)

        let error = try #require(plan.diagnostics.errors.first { $0.message.contains("QALab was not found") })
        #expect(error.file == "Configuration/Labs.json")
        #expect(error.line != nil)
        #expect(!plan.actions.contains { $0.lab == "QALab" })
        #expect(plan.action("distribute/DevLab/\(Self.datacenter)") != nil)
    }

    @Test("labs in another region than the factory are flagged cross-region; location spelling does not matter")
    func crossRegion() throws {
        var fixture = Self.fixture()
        fixture.labs.append(.init(subscriptionId: "33333333-3333-4333-8333-333333333333", resourceGroup: "rg-far", labName: "FarLab",
                                  location: "eastus", imagePaths: ["Win2016"]))
        let configuration = try fixture.load()
        var inventory = Observed.inventory(configuration)
        let i = inventory.labs.firstIndex { $0.lab?.id.name == "DevLab" }!
        inventory.labs[i].lab?.location = "West Europe"
        let plan = Self.plan(configuration, inventory)

        let far = try #require(plan.action("distribute/FarLab/\(Self.datacenter)"))
        #expect(far.crossRegion == true)
        #expect(far.reason.contains("cross-region"))
        #expect(far.reason.contains("eastus"))
        let dev = try #require(plan.action("distribute/DevLab/\(Self.datacenter)"))
        #expect(dev.crossRegion == false)
        #expect(!dev.reason.contains("cross-region"))
        #expect(!plan.diagnostics.hasErrors, "cross-region labs are copied to, not refused")
    }

    @Test("ImagePath matching is by whole segments: Win2016 does not cover Win2016R2/...")
    func segmentAwareMatching() throws {
        var fixture = FactoryFixture(
            labs: [
                .init(subscriptionId: "11111111-1111-4111-8111-111111111111", resourceGroup: "rg-dev", labName: "DevLab",
                      location: "westeurope", imagePaths: ["Win2016"]),
                .init(subscriptionId: "22222222-2222-4222-8222-222222222222", resourceGroup: "rg-r2", labName: "R2Lab",
                      location: "westeurope", imagePaths: ["Win2016R2"]),
            ],
            templates: ["Win2016/Datacenter.json": FactoryFixture.template(notes: "2016"),
                        "Win2016R2/Datacenter.json": FactoryFixture.template(notes: "2016 R2")])
        fixture.settings["imagesToSave"] = 3
        let configuration = try fixture.load()
        var inventory = Observed.inventory(configuration)
        let dev = inventory.labInventory("DevLab").lab!
        inventory.addImage(Observed.image("Win2016R2_Datacenter-Nov-1-2026", in: dev, path: "Win2016R2/Datacenter.json",
                                          createdAt: Observed.daysAgo(21)), toLab: "DevLab")
        inventory.addImage(Observed.image("Win2016_Datacenter-Nov-1-2026", in: dev, path: "Win2016/Datacenter.json",
                                          createdAt: Observed.daysAgo(21)), toLab: "DevLab")
        let plan = Self.plan(configuration, inventory)

        let distributions = plan.actions(.distributeImage).map { "\($0.lab!) \($0.imagePath!)" }
        #expect(distributions == ["DevLab Win2016/Datacenter.json", "R2Lab Win2016R2/Datacenter.json"])
        let retired = plan.actions(.retireImage)
        #expect(retired.map(\.imageName) == ["Win2016R2_Datacenter-Nov-1-2026"], "DevLab does not subscribe to Win2016R2")
        #expect(retired.first?.reason.contains("no longer subscribes") == true)
    }

    @Test("a factory VM left by an earlier run with this template version is captured without rebuilding")
    func resumableVM() throws {
        let configuration = try Self.fixture().load()
        let template = try #require(configuration.template(at: Self.datacenter))
        var inventory = Observed.inventory(configuration)
        inventory.factoryVMs = [Observed.vm(template.vmName, in: inventory.factory,
                                            tags: [FactoryTag.imagePath: template.path, FactoryTag.templateSha: template.blobSha])]
        let plan = Self.plan(configuration, inventory)

        let snap = "snap/\(Self.datacenter)"
        #expect(plan.actions(.buildVM).isEmpty)
        #expect(plan.actions(.replaceStaleVM).isEmpty)
        let capture = try #require(plan.action(snap))
        #expect(capture.kind == .captureImage)
        #expect(capture.dependsOn.isEmpty)
        #expect(capture.reason.contains("resume"))
        #expect(plan.actions(.deleteFactoryVM).map(\.dependsOn) == [[snap]])
        #expect(plan.actions(.distributeImage).allSatisfy { $0.dependsOn == [snap] })
        #expect(plan.actions(.distributeImage).count == 2)
    }

    @Test("a factory VM from another template version, or with failed artifacts, is replaced before the build")
    func staleVMIsReplaced() throws {
        let configuration = try Self.fixture().load()
        let template = try #require(configuration.template(at: Self.datacenter))
        for vm in [
            Observed.vm(template.vmName, in: Observed.factoryLab(configuration.settings),
                        tags: [FactoryTag.imagePath: template.path, FactoryTag.templateSha: "0ldsha"]),
            Observed.vm(template.vmName, in: Observed.factoryLab(configuration.settings),
                        tags: [FactoryTag.imagePath: template.path, FactoryTag.templateSha: template.blobSha],
                        artifacts: [ArtifactResult(name: "windows-7zip", status: "Failed", message: "exit code 1")]),
        ] {
            var inventory = Observed.inventory(configuration)
            inventory.factoryVMs = [vm]
            let plan = Self.plan(configuration, inventory)
            let replace = "build/replace/\(template.vmName)"
            #expect(plan.action(replace)?.kind == .replaceStaleVM)
            #expect(plan.action("build/\(Self.datacenter)")?.dependsOn == [replace])
            #expect(plan.actions(.deleteFactoryVM).count == 1, "the rebuilt VM is deleted once, after its capture")
        }
    }

    // MARK: Factory VMs

    @Test("factory VMs: FactoryIgnore is left alone, untagged is reported, failed or leftover factory VMs are deleted")
    func factoryVMCleanup() throws {
        let configuration = try Self.fixture().load()
        let template = try #require(configuration.template(at: Self.datacenter))
        var inventory = Observed.inventory(configuration)
        inventory.addRecord(Observed.record(template, name: "Win2016_Datacenter-Nov-1-2026", at: Observed.daysAgo(21)))
        for lab in ["DevLab", "QALab"] {
            inventory.addImage(Observed.image("Win2016_Datacenter-Nov-1-2026", in: inventory.labInventory(lab).lab!, path: Self.datacenter,
                                              createdAt: Observed.daysAgo(21)), toLab: lab)
        }
        let factory = inventory.factory
        inventory.factoryVMs = [
            Observed.vm("Keeper", in: factory, tags: [FactoryTag.ignore: "true"], powerState: "Running"),
            Observed.vm("Mystery", in: factory, tags: [:], powerState: "Running"),
            Observed.vm("Broken", in: factory, tags: [FactoryTag.imagePath: "Win2016/Gone.json"], provisioningState: "Failed", powerState: "Unknown"),
            Observed.vm("Leftover", in: factory, tags: [FactoryTag.imagePath: Self.datacenter]),
        ]
        let plan = Self.plan(configuration, inventory)

        #expect(!plan.actions.contains { $0.vmName == "Keeper" })
        // A VM the factory does not know is a warning, never an action: it is left alone and fails nothing.
        #expect(!plan.actions.contains { $0.vmName == "Mystery" })
        let unknown = try #require(plan.diagnostics.first { $0.message.contains("Mystery") })
        #expect(unknown.severity == .warning)
        #expect(unknown.hint?.contains("FactoryIgnore") == true)
        let broken = try #require(plan.action("cleanup/vm/Broken"))
        #expect(broken.kind == .deleteFactoryVM)
        #expect(broken.reason.contains("failed to provision"))
        #expect(plan.action("cleanup/vm/Leftover")?.kind == .deleteFactoryVM)
        #expect(plan.actions.count == 2)
    }

    // MARK: Retirement

    @Test("retention keeps the newest imagesToSave per ImagePath, counting the image this run makes")
    func retentionCountsPlannedImage() throws {
        let configuration = try Self.fixture().load()
        let template = try #require(configuration.template(at: Self.datacenter))
        var inventory = Observed.inventory(configuration)
        let old = [("Win2016_Datacenter-Nov-1-2026", 21.0), ("Win2016_Datacenter-Nov-8-2026", 14.0), ("Win2016_Datacenter-Nov-15-2026", 7.0)]
        let dev = inventory.labInventory("DevLab").lab!
        for (name, age) in old {
            inventory.addRecord(Observed.record(template, name: name, at: Observed.daysAgo(age), sha: "0ldsha"))
            inventory.addImage(Observed.image(name, in: dev, path: Self.datacenter, createdAt: Observed.daysAgo(age)), toLab: "DevLab")
        }
        inventory.addImage(Observed.image("Win2016_Datacenter-Oct-1-2026", in: dev, path: nil, createdAt: Observed.daysAgo(60)), toLab: "DevLab")
        inventory.addImage(Observed.image("Win2016_Datacenter-Nov-15-2026", in: inventory.labInventory("QALab").lab!, path: Self.datacenter,
                                          createdAt: Observed.daysAgo(7)), toLab: "QALab")
        let plan = Self.plan(configuration, inventory)

        let snap = "snap/\(Self.datacenter)"
        let records = plan.actions(.retireRecord)
        #expect(records.map(\.imageName) == ["Win2016_Datacenter-Nov-8-2026", "Win2016_Datacenter-Nov-1-2026"])
        #expect(records.allSatisfy { $0.dependsOn == [snap] && $0.reason.contains("newest 2") })
        let images = plan.actions(.retireImage)
        #expect(images.map { "\($0.lab!) \($0.imageName!)" } == ["DevLab Win2016_Datacenter-Nov-8-2026", "DevLab Win2016_Datacenter-Nov-1-2026"])
        #expect(images.allSatisfy { $0.dependsOn == ["distribute/DevLab/\(Self.datacenter)"] })
        #expect(!plan.actions.contains { $0.imageName == "Win2016_Datacenter-Oct-1-2026" }, "an untagged image is never retired")
        #expect(plan.deletionCount == 4)
    }

    @Test("retention without a new image keeps the newest imagesToSave records and lab images")
    func retentionWithoutNewImage() throws {
        let configuration = try Self.fixture().load()
        let template = try #require(configuration.template(at: Self.datacenter))
        var inventory = Observed.inventory(configuration)
        let dev = inventory.labInventory("DevLab").lab!
        for (name, age) in [("Win2016_Datacenter-Nov-1-2026", 21.0), ("Win2016_Datacenter-Nov-8-2026", 14.0), ("Win2016_Datacenter-Nov-15-2026", 7.0)] {
            inventory.addRecord(Observed.record(template, name: name, at: Observed.daysAgo(age), sha: age == 7 ? nil : "0ldsha"))
            inventory.addImage(Observed.image(name, in: dev, path: Self.datacenter, createdAt: Observed.daysAgo(age)), toLab: "DevLab")
        }
        inventory.addImage(Observed.image("Win2016_Datacenter-Nov-15-2026", in: inventory.labInventory("QALab").lab!, path: Self.datacenter,
                                          createdAt: Observed.daysAgo(7)), toLab: "QALab")
        let plan = Self.plan(configuration, inventory)

        #expect(plan.actions.map { "\($0.kind.rawValue) \($0.lab!) \($0.imageName!)" } == [
            "retireRecord ImageFactory Win2016_Datacenter-Nov-1-2026",
            "retireImage DevLab Win2016_Datacenter-Nov-1-2026",
        ])
        #expect(plan.actions.allSatisfy { $0.dependsOn.isEmpty })
    }

    @Test("the image a lab is about to receive is never retired, even when a newer one exists (a reverted template)")
    func distributedImageIsKept() throws {
        let configuration = try Self.fixture(settings: ["imagesToSave": 1]).load()
        let template = try #require(configuration.template(at: Self.datacenter))
        var inventory = Observed.inventory(configuration)
        let reverted = "Win2016_Datacenter-Nov-8-2026", newer = "Win2016_Datacenter-Nov-15-2026"
        inventory.addRecord(Observed.record(template, name: reverted, at: Observed.daysAgo(14)))
        inventory.addRecord(Observed.record(template, name: newer, at: Observed.daysAgo(7), sha: "n3wersha"))
        // DevLab has only the newer image; QALab has kept the reverted one beside it.
        for lab in ["DevLab", "QALab"] {
            inventory.addImage(Observed.image(newer, in: inventory.labInventory(lab).lab!, path: Self.datacenter,
                                              createdAt: Observed.daysAgo(7)), toLab: lab)
        }
        inventory.addImage(Observed.image(reverted, in: inventory.labInventory("QALab").lab!, path: Self.datacenter,
                                          createdAt: Observed.daysAgo(14)), toLab: "QALab")
        let plan = Self.plan(configuration, inventory)

        #expect(plan.actions(.buildVM).isEmpty, "the template's current version has a record")
        #expect(plan.actions(.distributeImage).map { "\($0.lab!) \($0.imageName!)" } == ["DevLab \(reverted)"])
        let distributed = Set(plan.actions(.distributeImage).compactMap(\.imageName))
        #expect(!plan.actions.contains { $0.deletesImage && distributed.contains($0.imageName ?? "") },
                "retiring \(reverted) would delete the VHD the labs are being given")
        #expect(plan.actions(.retireRecord).map(\.imageName) == [newer])
        #expect(plan.actions(.retireImage).map { "\($0.lab!) \($0.imageName!)" } == ["DevLab \(newer)", "QALab \(newer)"])
    }

    @Test("a lab that no longer subscribes to a path has its images of that path retired")
    func unsubscribedLab() throws {
        let configuration = try Self.fixture(templates: [Self.datacenter, Self.sql]).load()
        var inventory = Observed.inventory(configuration)
        for path in [Self.datacenter, Self.sql] {
            let template = try #require(configuration.template(at: path))
            let name = template.imageName + "-Nov-1-2026"
            inventory.addRecord(Observed.record(template, name: name, at: Observed.daysAgo(21)))
            for lab in ["DevLab", "QALab"] {
                inventory.addImage(Observed.image(name, in: inventory.labInventory(lab).lab!, path: path, createdAt: Observed.daysAgo(21)), toLab: lab)
            }
        }
        let plan = Self.plan(configuration, inventory)

        #expect(plan.ids == ["retire/image/QALab/Win2016_SQLServer-2016-Express-Nov-1-2026"])
        let retire = try #require(plan.actions.first)
        #expect(retire.kind == .retireImage)
        #expect(retire.imagePath == Self.sql)
        #expect(retire.reason.contains("no longer subscribes"))
    }

    @Test("a removed template has its records and every lab's images of it retired")
    func removedTemplate() throws {
        let configuration = try Self.fixture().load()
        let template = try #require(configuration.template(at: Self.datacenter))
        var inventory = Observed.inventory(configuration)
        let current = "Win2016_Datacenter-Nov-1-2026"
        inventory.addRecord(Observed.record(template, name: current, at: Observed.daysAgo(21)))
        for lab in ["DevLab", "QALab"] {
            inventory.addImage(Observed.image(current, in: inventory.labInventory(lab).lab!, path: Self.datacenter,
                                              createdAt: Observed.daysAgo(21)), toLab: lab)
        }
        var gone = template
        gone.path = "Win2016/Old.json"
        gone.imageName = "Win2016_Old"
        inventory.addRecord(Observed.record(gone, name: "Win2016_Old-Oct-1-2026", at: Observed.daysAgo(52)))
        inventory.addRecord(Observed.record(gone, name: "Win2016_Old-Oct-8-2026", at: Observed.daysAgo(45)))
        inventory.addImage(Observed.image("Win2016_Old-Oct-8-2026", in: inventory.labInventory("DevLab").lab!, path: "Win2016\\Old.json",
                                          createdAt: Observed.daysAgo(45)), toLab: "DevLab")
        inventory.addImage(Observed.image("Win2016_Old-by-hand", in: inventory.labInventory("DevLab").lab!, path: nil,
                                          createdAt: Observed.daysAgo(45)), toLab: "DevLab")
        inventory.factoryImages = [Observed.image("Win2016_Old-Oct-8-2026", in: inventory.factory, path: "Win2016/Old.json",
                                                  createdAt: Observed.daysAgo(45))]
        let plan = Self.plan(configuration, inventory)

        #expect(plan.actions.map { "\($0.kind.rawValue) \($0.lab!) \($0.imageName!)" }.sorted() == [
            "retireImage DevLab Win2016_Old-Oct-8-2026",
            "retireImage ImageFactory Win2016_Old-Oct-8-2026",
            "retireRecord ImageFactory Win2016_Old-Oct-1-2026",
            "retireRecord ImageFactory Win2016_Old-Oct-8-2026",
        ])
        #expect(plan.actions.allSatisfy { $0.reason.contains("no longer exists") && $0.imagePath == "Win2016/Old.json" })
        #expect(plan.actions(.retireRecord).compactMap(\.resource).sorted() == ["afactorystorage/imagefactoryvhds/Win2016_Old-Oct-1-2026.vhd",
                                                                                 "afactorystorage/imagefactoryvhds/Win2016_Old-Oct-8-2026.vhd"])
        #expect(plan.action("retire/image/ImageFactory/Win2016_Old-Oct-8-2026")?.labID == inventory.factory.id)
    }

    @Test("a record whose VHD is missing is retired")
    func brokenRecord() throws {
        let configuration = try Self.fixture().load()
        let template = try #require(configuration.template(at: Self.datacenter))
        var inventory = Observed.inventory(configuration)
        inventory.records.append(Observed.record(template, name: "Win2016_Datacenter-Nov-1-2026", at: Observed.daysAgo(21)))
        inventory.factoryBlobs.append(Observed.blob("Win2016_Datacenter-Nov-1-2026.json", account: inventory.factory.storageAccount))
        let plan = Self.plan(configuration, inventory)

        let retire = try #require(plan.action("retire/record/Win2016_Datacenter-Nov-1-2026"))
        #expect(retire.reason.contains("missing or incomplete"))
        #expect(plan.action("build/\(Self.datacenter)") != nil, "a record without its VHD does not count as an image")
        #expect(plan.action("snap/\(Self.datacenter)")?.imageName == "Win2016_Datacenter-\(Observed.today)")
    }

    @Test("images without the ImagePath tag are never planned for deletion, whatever their name")
    func untaggedImagesAreNeverTouched() throws {
        let configuration = try Self.fixture(settings: ["imagesToSave": 1]).load()
        var inventory = Observed.inventory(configuration)
        let untagged = ["Win2016_Datacenter-Jan-1-2020", "Win2016_Old-Jan-1-2020", "Win2016_SQLServer-2016-Express-Jan-1-2020", "MyOwnImage"]
        for lab in ["DevLab", "QALab"] {
            for name in untagged {
                inventory.addImage(Observed.image(name, in: inventory.labInventory(lab).lab!, path: nil, createdAt: Observed.daysAgo(400)), toLab: lab)
            }
        }
        inventory.factoryImages = untagged.map { Observed.image($0, in: inventory.factory, path: nil, createdAt: Observed.daysAgo(400)) }
        let plan = Self.plan(configuration, inventory)

        #expect(!plan.actions.isEmpty)
        #expect(plan.deletionCount == 0)
        #expect(!plan.actions.contains { untagged.contains($0.imageName ?? "") })
    }

    @Test("a plan deleting more images than maxDeletions carries an error diagnostic")
    func maxDeletions() throws {
        func plan(maxDeletions: Int) throws -> Plan {
            let configuration = try Self.fixture(settings: ["maxDeletions": maxDeletions]).load()
            let template = try #require(configuration.template(at: Self.datacenter))
            var inventory = Observed.inventory(configuration)
            var gone = template
            gone.path = "Win2016/Old.json"
            for (i, lab) in ["DevLab", "QALab"].enumerated() {
                inventory.addRecord(Observed.record(gone, name: "Win2016_Old-Oct-\(i + 1)-2026", at: Observed.daysAgo(50)))
                inventory.addImage(Observed.image("Win2016_Old-Oct-1-2026", in: inventory.labInventory(lab).lab!, path: gone.path,
                                                  createdAt: Observed.daysAgo(50)), toLab: lab)
            }
            return Self.plan(configuration, inventory)
        }
        let over = try plan(maxDeletions: 3)
        #expect(over.deletionCount == 4)
        let error = try #require(over.diagnostics.errors.first { $0.message.contains("max-deletions") })
        #expect(error.message.contains("delete 4 images, more than --max-deletions 3"))
        #expect(over.settings.maxDeletions == 3)

        let within = try plan(maxDeletions: 4)
        #expect(within.deletionCount == 4)
        #expect(!within.diagnostics.hasErrors)
    }

    @Test("old completed factory deployments are pruned; running and foreign ones are not")
    func pruneDeployments() throws {
        let configuration = try Self.fixture().load()
        var inventory = Observed.inventory(configuration)
        let s = configuration.settings
        inventory.deployments = [
            Deployment(subscriptionId: s.subscriptionId, resourceGroup: s.resourceGroup, name: "imagefactory-old", provisioningState: "Succeeded", timestamp: Observed.daysAgo(30)),
            Deployment(subscriptionId: s.subscriptionId, resourceGroup: s.resourceGroup, name: "imagefactory-recent", provisioningState: "Failed", timestamp: Observed.daysAgo(1)),
            Deployment(subscriptionId: s.subscriptionId, resourceGroup: s.resourceGroup, name: "imagefactory-running", provisioningState: "Running", timestamp: Observed.daysAgo(40)),
            Deployment(subscriptionId: s.subscriptionId, resourceGroup: s.resourceGroup, name: "network-setup", provisioningState: "Succeeded", timestamp: Observed.daysAgo(90)),
        ]
        let prune = try #require(Self.plan(configuration, inventory).action("cleanup/deployments"))
        #expect(prune.kind == .pruneDeployments)
        #expect(prune.resource == "imagefactory-old")
    }
}
