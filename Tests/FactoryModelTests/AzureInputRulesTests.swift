import FactoryModel
import Foundation
import Testing

/// Input Azure would refuse is caught before anything runs, with the file and line.
@Suite("Input Azure would refuse")
struct AzureInputRulesTests {
    static func load(labs: [Fixture.Lab], template: String = Fixture.template()) throws -> FactoryConfiguration {
        try ConfigFixture(["Labs.json": Fixture.labs(labs), "GoldenImages/Win2016/Datacenter.json": template]).load()
    }

    @Test("subscription ids that are not GUIDs, and lab and resource group names Azure refuses, are errors for plan and run, with the entry's line",
          arguments: [
            ("not-a-guid", "rg", "DevLab", "SubscriptionId"),
            ("11111111-1111-4111-8111-111111111111", "rg/../x", "DevLab", "ResourceGroup"),
            ("11111111-1111-4111-8111-111111111111", "rg.", "DevLab", "ResourceGroup"),
            ("11111111-1111-4111-8111-111111111111", String(repeating: "r", count: 91), "DevLab", "ResourceGroup"),
            ("11111111-1111-4111-8111-111111111111", "rg", "Dev Lab", "LabName"),
            ("11111111-1111-4111-8111-111111111111", "rg", "lab/../other", "LabName"),
            ("11111111-1111-4111-8111-111111111111", "rg", "lab\u{0}nul", "LabName"),
            ("11111111-1111-4111-8111-111111111111", "rg", "lab\nnewline", "LabName"),
            ("11111111-1111-4111-8111-111111111111", "rg", String(repeating: "l", count: 51), "LabName"),
          ])
    func refusedNames(subscription: String, group: String, name: String, field: String) throws {
        let config = try Self.load(labs: [Fixture.Lab(subscriptionId: subscription, resourceGroup: group, labName: name, imagePaths: ["Win2016"])])
        #expect(config.isValid, "validate lets it pass with a warning")
        let warning = try #require(config.diagnostics.first { $0.message.contains("Azure would refuse") })
        #expect(warning.severity == .warning)
        let errors = config.azureNameErrors
        #expect(errors.count == 1, "\(errors)")
        let error = try #require(errors.first)
        #expect(error.severity == .error)
        #expect(error.message.contains(field), "\(error.message)")
        #expect(error.line == config.labs.first?.line && error.line != nil)
        #expect(!error.message.contains("\u{0}") && !error.message.contains("\n"), "control characters are shown escaped")
    }

    @Test("a valid entry has no name errors")
    func validNames() throws {
        let config = try Self.load(labs: [Fixture.Lab(subscriptionId: "11111111-1111-4111-8111-111111111111", resourceGroup: "rg-labs.(eu)_1",
                                                      labName: "Dev_Lab-1", imagePaths: ["Win2016"])])
        #expect(config.azureNameErrors.isEmpty)
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
    }

    @Test("a template whose artifacts are an expression is an error naming the template and line, not a VM built without them")
    func artifactsExpression() throws {
        let template = """
            {
              "resources": [{
                "type": "Microsoft.DevTestLab/labs/virtualmachines",
                "name": "[parameters('newVMName')]",
                "properties": {
                  "galleryImageReference": {"publisher": "p", "offer": "o", "sku": "s", "osType": "Windows", "version": "latest"},
                  "artifacts": "[parameters('artifacts')]"
                }
              }]
            }
            """
        let config = try Self.load(labs: [Fixture.Lab(imagePaths: ["Win2016"])], template: template)
        let error = try #require(config.diagnostics.errors.first)
        #expect(error.file?.hasSuffix("GoldenImages/Win2016/Datacenter.json") == true)
        #expect(error.line == 7)
        #expect(error.message.contains("artifacts"))
        #expect(!config.isValid)
    }

    @Test("a template over ARM's 4 MB limit is an error before anything is deployed")
    func templateTooLarge() throws {
        let padding = String(repeating: "x", count: Naming.maxTemplateBytes)
        let template = Fixture.template().replacingOccurrences(of: "A golden image", with: padding)
        let config = try Self.load(labs: [Fixture.Lab(imagePaths: ["Win2016"])], template: template)
        let error = try #require(config.diagnostics.errors.first)
        #expect(error.message.contains("4 MB"))
        #expect(error.file?.hasSuffix("Datacenter.json") == true)
    }

    @Test("an entry without LabName is reported with its line")
    func missingLabNameHasALine() throws {
        let labs = """
            {
              "Labs": [
                { "SubscriptionId": "11111111-1111-4111-8111-111111111111", "LabName": "A", "ImagePaths": ["Win2016"] },
                { "SubscriptionId": "22222222-2222-4222-8222-222222222222", "ImagePaths": ["Win2016"] }
              ]
            }
            """
        let config = try ConfigFixture(["Labs.json": labs, "GoldenImages/Win2016/Datacenter.json": Fixture.template()]).load()
        let error = try #require(config.diagnostics.errors.first { $0.message.contains("LabName is missing") })
        #expect(error.line == 4)
    }
}
