import FactoryEngine
import FactoryModel
import Foundation
import Testing

/// Gallery planning rules that protect what the factory does not own or still needs.
@Suite("Gallery planner")
struct GalleryPlannerTests {
    static func setup(imagesToSave: Int = 1) throws -> (FactoryConfiguration, Inventory, GalleryImageDefinitionID, String) {
        var configuration = try PlannerTests.fixture(templates: [PlannerTests.datacenter]).load()
        configuration.galleries = [GalleryTarget(subscriptionId: configuration.settings.subscriptionId, resourceGroup: "rg-images", galleryName: "Shared.Images",
                                                 location: "westeurope", imagePaths: [PlannerTests.datacenter], images: [PlannerTests.datacenter],
                                                 imagesToSave: imagesToSave)]
        var inventory = Observed.inventory(configuration)
        let template = try #require(configuration.template(at: PlannerTests.datacenter))
        let record = Observed.record(template, name: "Win2016_Datacenter-Nov-15-2026", at: Observed.daysAgo(7))
        inventory.addRecord(record)
        let target = configuration.galleries[0]
        let definition = target.definition(for: template)
        let definitionID = GalleryImageDefinitionID(gallery: target.id, name: definition.name)
        let factoryTag = inventory.factory.id.resourceId.lowercased()
        return (configuration, inventory, definitionID, factoryTag)
    }

    static func version(_ definition: GalleryImageDefinitionID, _ number: String, factory: String?, state: String = "Succeeded") -> GalleryImageVersion {
        var tags = [FactoryTag.imagePath: PlannerTests.datacenter]
        if let factory { tags[FactoryTag.factory] = factory }
        return GalleryImageVersion(id: GalleryImageVersionID(definition: definition, version: number), location: "westeurope", provisioningState: state, tags: tags,
                                   targetRegions: [TargetRegion(name: "westeurope")], aggregatedReplicationState: state == "Succeeded" ? "Completed" : "Failed",
                                   replication: [RegionReplication(region: "westeurope", state: state == "Succeeded" ? "Completed" : "Failed", progress: state == "Succeeded" ? 100 : 0)],
                                   createdAt: Observed.daysAgo(30))
    }

    static func plan(_ configuration: FactoryConfiguration, _ inventory: Inventory) -> Plan {
        FactoryPlanner.plan(configuration, inventory: inventory, options: PlanOptions(now: Observed.now))
    }

    @Test("another factory's versions in a shared gallery are never retired, even for a path this factory does not know")
    func sharedGallery() throws {
        var (configuration, inventory, definitionID, factoryTag) = try Self.setup()
        let definition = GalleryImageDefinition(id: definitionID, location: "westeurope", osType: .windows, osState: .generalized, publisher: "ImageFactory",
                                                offer: "Win2016", sku: "Datacenter", provisioningState: "Succeeded",
                                                tags: [FactoryTag.managedBy: "ImageFactory", FactoryTag.factory: factoryTag])
        let mineOld = Self.version(definitionID, "2026.1001.100000", factory: factoryTag)
        let theirs = Self.version(definitionID, "2026.1002.100000", factory: "/subscriptions/other/resourcegroups/rg/providers/microsoft.devtestlab/labs/prodfactory")
        var gone = Self.version(definitionID, "2026.1003.100000", factory: "/subscriptions/other/resourcegroups/rg/providers/microsoft.devtestlab/labs/prodfactory")
        gone.tags[FactoryTag.imagePath] = "Their/Template.json"
        configuration.galleries[0].imagesToSave = 1
        inventory.galleries = [GalleryInventory(key: configuration.galleries[0].key,
                                                gallery: Gallery(id: configuration.galleries[0].id, location: "westeurope", description: "", provisioningState: "Succeeded"),
                                                definitions: [GalleryInventory.Definition(definition: definition, versions: [mineOld, theirs, gone])])]
        let plan = Self.plan(configuration, inventory)
        let retired = plan.actions.compactMap { action -> String? in
            if case .retireVersion(let spec) = action.operation { return spec.version.version }
            return nil
        }
        #expect(retired == ["2026.1001.100000"], "only this factory's older version goes: \(retired)")
        #expect(plan.actions.contains { $0.kind == .publishVersion }, "the current record is published")
        #expect(!plan.actions.contains { $0.kind == .deleteImageDefinition })
    }

    @Test("a failed old version never counts as kept: the good fallback stays")
    func failedVersionsDoNotCount() throws {
        var (configuration, inventory, definitionID, factoryTag) = try Self.setup(imagesToSave: 2)
        let definition = GalleryImageDefinition(id: definitionID, location: "westeurope", osType: .windows, osState: .generalized, publisher: "ImageFactory",
                                                offer: "Win2016", sku: "Datacenter", provisioningState: "Succeeded", tags: [FactoryTag.factory: factoryTag])
        let good = Self.version(definitionID, "2026.1001.100000", factory: factoryTag)
        let failed = Self.version(definitionID, "2026.1008.100000", factory: factoryTag, state: "Failed")
        configuration.galleries[0].imagesToSave = 2
        inventory.galleries = [GalleryInventory(key: configuration.galleries[0].key,
                                                gallery: Gallery(id: configuration.galleries[0].id, location: "westeurope", description: "", provisioningState: "Succeeded"),
                                                definitions: [GalleryInventory.Definition(definition: definition, versions: [good, failed])])]
        let plan = Self.plan(configuration, inventory)
        let retired = plan.actions.compactMap { action -> String? in
            if case .retireVersion(let spec) = action.operation { return spec.version.version }
            return nil
        }
        #expect(retired == ["2026.1008.100000"], "the failed version goes, the good one stays as the fallback: \(retired)")
    }
}
