import FactoryModel
import Foundation
@testable import ImageFactoryCLI
import Testing

/// Where a failed action's CI annotation points, tested in-process through the CLI library.
@Suite("CI annotations find their configuration entry")
struct ActionSourceLocatorTests {
    static let subscriptionA = "11111111-1111-4111-8111-111111111111"
    static let subscriptionB = "22222222-2222-4222-8222-222222222222"

    static func configuration() throws -> FactoryConfiguration {
        let labs = """
            {"Labs": [
              {"SubscriptionId": "\(subscriptionA)", "ResourceGroup": "rg-a", "LabName": "QALab", "ImagePaths": ["Linux"]},
              {"SubscriptionId": "\(subscriptionB)", "ResourceGroup": "rg-b", "LabName": "QALab", "ImagePaths": ["Linux"]}
            ]}
            """
        let template = """
            {"resources":[{"type":"Microsoft.DevTestLab/labs/virtualmachines","name":"[parameters('newVMName')]",
              "properties":{"notes":"n","galleryImageReference":{"publisher":"p","offer":"o","sku":"s","osType":"Linux","version":"latest"}}}]}
            """
        let snapshot = try InMemoryConfigSource(commit: "c0ffee", files: ["Labs.json": labs, "GoldenImages/Linux/Ubuntu.json": template]).load()
        return ConfigurationLoader.load(snapshot)
    }

    @Test("two subscriptions with a lab of the same name: the annotation points at the failing lab's own entry")
    func sameLabNameInTwoSubscriptions() throws {
        let configuration = try Self.configuration()
        let lines = configuration.labs.map(\.line)
        #expect(lines.count == 2 && lines[0] != lines[1], "the fixture has two entries on different lines: \(lines)")
        let locator = ActionSourceLocator(configuration: configuration)
        for (index, subscription) in [Self.subscriptionA, Self.subscriptionB].enumerated() {
            let lab = LabID(subscriptionId: subscription, resourceGroup: index == 0 ? "rg-a" : "rg-b", name: "QALab")
            let account = StorageAccountID(subscriptionId: subscription, resourceGroup: lab.resourceGroup, name: "aqalab\(index)")
            let spec = DistributionSpec(image: CustomImageID(lab: lab, name: "Linux_Ubuntu"), imagePath: "Linux/Ubuntu.json",
                                        source: BlobID(container: ContainerID(account: account, name: "v"), name: "s.vhd"),
                                        destination: BlobID(container: ContainerID(account: account, name: "v"), name: "d.vhd"),
                                        osType: .linux, generalized: true, description: "", tags: [:], expectedMD5: nil, capture: nil, crossRegion: false)
            let action = PlanAction(id: "distribute/QALab/Linux/Ubuntu.json", stage: .distribute, operation: .distributeImage(spec), reason: "test")
            let location = try #require(locator.locate(action, message: "CopyFailed"))
            #expect(location.file.hasSuffix("Labs.json"))
            #expect(location.line == lines[index], "subscription \(subscription)")
        }
    }
}
