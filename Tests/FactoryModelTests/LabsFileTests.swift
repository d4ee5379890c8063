import FactoryModel
import Foundation
import Testing

@Suite("Labs.json loading")
struct LabsFileTests {
    static let templates = ["Win2016/Datacenter.json", "Win2016/SQLServer 2016 Express.json", "Win2016R2/Core.json",
                            "Win2012R2/VS2015 Enterprise with Azure SDK.json"]

    @Test("a well-formed Labs.json yields the lab with its resolved images and no diagnostics")
    func wellFormed() throws {
        let config = try Fixture.configuration(templates: Self.templates,
                                               imagePaths: ["Win2016", "Win2016R2", "Win2012R2/VS2015 Enterprise with Azure SDK.json"]).load()
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(config.isValid)
        #expect(config.commit == "1234567890abcdef1234567890abcdef12345678")
        let lab = try #require(config.labs.first)
        #expect(config.labs.count == 1)
        #expect(lab.subscriptionId == "11111111-1111-4111-8111-111111111111")
        #expect(lab.resourceGroup == "rg-labs")
        #expect(lab.labName == "DevLab")
        #expect(lab.imagePaths == ["Win2016", "Win2016R2", "Win2012R2/VS2015 Enterprise with Azure SDK.json"])
        #expect(lab.images == Self.templates.sorted())
        #expect(lab.line == 6)
    }

    @Test("Win2016 covers Win2016/Datacenter.json but never Win2016R2/Core.json")
    func segmentMatching() throws {
        let config = try Fixture.configuration(templates: ["Win2016/Datacenter.json", "Win2016R2/Core.json"],
                                               imagePaths: ["Win2016"]).load()
        let lab = try #require(config.labs.first)
        #expect(lab.images == ["Win2016/Datacenter.json"])
        // The R2 template is therefore unused: a warning, not silently delivered.
        let unused = config.diagnostics.warnings
        #expect(unused.count == 1)
        #expect(unused.first?.message == "Template Win2016R2/Core.json is not used by any lab in Labs.json.")
        #expect(unused.first?.file == "Configuration/GoldenImages/Win2016R2/Core.json")
        #expect(config.isValid)
    }

    @Test("backslash ImagePaths resolve and are stored with slashes")
    func backslashes() throws {
        let config = try Fixture.configuration(templates: ["Windows/Server 2019/Datacenter.json", "Windows/Server 2022/Datacenter.json"],
                                               imagePaths: ["Windows\\Server 2019", "Windows\\Server 2022\\Datacenter.json"]).load()
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        let lab = try #require(config.labs.first)
        #expect(lab.imagePaths == ["Windows/Server 2019", "Windows/Server 2022/Datacenter.json"])
        #expect(lab.images == ["Windows/Server 2019/Datacenter.json", "Windows/Server 2022/Datacenter.json"])
    }

    @Test("an ImagePath with the exact case wins over a folder differing only in case, without a warning")
    func exactCaseWins() throws {
        let config = try Fixture.configuration(templates: ["Win2016/Datacenter.json", "win2016/Core.json"],
                                               imagePaths: ["win2016", "Win2016"]).load()
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        let lab = try #require(config.labs.first)
        #expect(lab.imagePaths == ["win2016", "Win2016"])
        #expect(lab.images == ["Win2016/Datacenter.json", "win2016/Core.json"])
    }

    @Test("an ImagePath matching only ignoring case is accepted with a warning naming the real path")
    func caseOnlyMatch() throws {
        let config = try Fixture.configuration(templates: ["Win2016/Datacenter.json", "Win2016R2/Core.json"],
                                               imagePaths: ["WIN2016", "win2016r2/core.JSON"]).load()
        #expect(config.isValid)
        let lab = try #require(config.labs.first)
        #expect(lab.imagePaths == ["Win2016", "Win2016R2/Core.json"])
        #expect(lab.images == ["Win2016/Datacenter.json", "Win2016R2/Core.json"])
        let warnings = config.diagnostics.warnings
        #expect(warnings.count == 2)
        let first = try #require(warnings.first { $0.message.contains("\"WIN2016\"") })
        #expect(first.message.contains("matches \"Win2016\" only ignoring case"))
        #expect(first.hint == "Write it as \"Win2016\".")
        #expect(first.file == "Configuration/Labs.json")
        #expect(first.line == 8)
        let second = try #require(warnings.first { $0.message.contains("\"win2016r2/core.JSON\"") })
        #expect(second.hint == "Write it as \"Win2016R2/Core.json\".")
        #expect(second.line == 9)
    }

    @Test("property names are accepted in any case", arguments: [
        ("Labs", "SubscriptionId", "ResourceGroup", "LabName", "ImagePaths"),
        ("labs", "subscriptionId", "resourceGroup", "labName", "imagePaths"),
        ("LABS", "SUBSCRIPTIONID", "RESOURCEGROUP", "LABNAME", "IMAGEPATHS"),
        ("lAbS", "subscriptionid", "Resourcegroup", "labname", "imagepaths"),
    ])
    func anyPropertyCase(labs: String, subscription: String, group: String, name: String, paths: String) throws {
        var fixture = ConfigFixture(["GoldenImages/Win2016/Datacenter.json": Fixture.template()])
        fixture["Labs.json"] = """
            { "\(labs)": [ { "\(subscription)": "11111111-1111-4111-8111-111111111111", "\(group)": "rg-1", "\(name)": "Lab1", "\(paths)": ["Win2016"] } ] }
            """
        let config = try fixture.load()
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        let lab = try #require(config.labs.first)
        #expect(lab.subscriptionId == "11111111-1111-4111-8111-111111111111")
        #expect(lab.resourceGroup == "rg-1")
        #expect(lab.labName == "Lab1")
        #expect(lab.images == ["Win2016/Datacenter.json"])
    }

    @Test("the file name Labs.json is found in any case")
    func fileNameCase() throws {
        let fixture = ConfigFixture(["labs.JSON": Fixture.labs(imagePaths: ["Win2016"]),
                                     "GoldenImages/Win2016/Datacenter.json": Fixture.template()])
        let config = try fixture.load()
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(config.labs.count == 1)
    }

    @Test("ResourceGroup may be absent (older files): the lab has none and nothing is reported")
    func resourceGroupAbsent() throws {
        var fixture = ConfigFixture(["GoldenImages/Win2016/Datacenter.json": Fixture.template()])
        fixture["Labs.json"] = Fixture.labs([Fixture.Lab(resourceGroup: nil, imagePaths: ["Win2016"])])
        #expect(fixture["Labs.json"]?.contains("ResourceGroup") == false)
        let config = try fixture.load()
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        let lab = try #require(config.labs.first)
        #expect(lab.resourceGroup == nil)
        #expect(lab.images == ["Win2016/Datacenter.json"])
    }

    @Test("an empty ResourceGroup is treated as absent")
    func resourceGroupEmpty() throws {
        var fixture = ConfigFixture(["GoldenImages/Win2016/Datacenter.json": Fixture.template()])
        fixture["Labs.json"] = Fixture.labs([Fixture.Lab(resourceGroup: "", imagePaths: ["Win2016"])])
        let config = try fixture.load()
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(try #require(config.labs.first).resourceGroup == nil)
    }

    @Test("the same lab twice (same subscription and name, any case) is an error pointing at both entries")
    func duplicateLabs() throws {
        var fixture = ConfigFixture(["GoldenImages/Win2016/Datacenter.json": Fixture.template(),
                                     "GoldenImages/Linux/Ubuntu.json": Fixture.template(osType: "Linux")])
        fixture["Labs.json"] = Fixture.labs([
            Fixture.Lab(subscriptionId: "AAAAAAAA-1111-4111-8111-111111111111", labName: "DevLab", imagePaths: ["Win2016"]),
            Fixture.Lab(subscriptionId: "aaaaaaaa-1111-4111-8111-111111111111", labName: "devlab", imagePaths: ["Linux"]),
        ])
        let config = try fixture.load()
        let errors = config.diagnostics.errors
        #expect(errors.count == 1)
        let error = try #require(errors.first)
        #expect(error.message.contains("Labs[1] (devlab)"))
        #expect(error.message.contains("listed twice (first at line 6)"))
        #expect(error.file == "Configuration/Labs.json")
        #expect(error.line == 14)
        #expect(error.hint?.contains("Merge") == true)
        #expect(config.labs.map(\.labName) == ["DevLab"])
        #expect(!config.isValid)
    }

    @Test("the same lab name in different subscriptions is two labs")
    func sameNameOtherSubscription() throws {
        var fixture = ConfigFixture(["GoldenImages/Win2016/Datacenter.json": Fixture.template()])
        fixture["Labs.json"] = Fixture.labs([
            Fixture.Lab(subscriptionId: "aaaaaaaa-0000-4000-8000-00000000000a", labName: "DevLab", imagePaths: ["Win2016"]),
            Fixture.Lab(subscriptionId: "bbbbbbbb-0000-4000-8000-00000000000b", labName: "DevLab", imagePaths: ["Win2016"]),
        ])
        let config = try fixture.load()
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(config.labs.map(\.subscriptionId) == ["aaaaaaaa-0000-4000-8000-00000000000a", "bbbbbbbb-0000-4000-8000-00000000000b"])
        #expect(config.labs.map(\.line) == [6, 14])
    }

    @Test("an ImagePath matching nothing is an error on its line, with the closest existing path as the hint")
    func unmatchedImagePathHint() throws {
        let config = try Fixture.configuration(templates: ["Win2016/Datacenter.json", "Win2016R2/Core.json"],
                                               imagePaths: ["Win2016R2", "Win2016/Datacentre.json"]).load()
        let error = try #require(config.diagnostics.errors.first)
        #expect(config.diagnostics.errors.count == 1)
        #expect(error.message == "Labs[0] (DevLab): ImagePath \"Win2016/Datacentre.json\" matches no template.")
        #expect(error.hint == "Did you mean \"Win2016/Datacenter.json\"?")
        #expect(error.file == "Configuration/Labs.json")
        #expect(error.line == 9)
        // The lab is kept with what did resolve.
        #expect(try #require(config.labs.first).images == ["Win2016R2/Core.json"])
    }

    @Test("a folder ImagePath with a typo suggests the folder")
    func unmatchedFolderHint() throws {
        let config = try Fixture.configuration(templates: ["Win2016/Datacenter.json"], imagePaths: ["Win2061"]).load()
        let error = try #require(config.diagnostics(containing: "\"Win2061\" matches no template").first)
        #expect(error.severity == .error)
        #expect(error.hint == "Did you mean \"Win2016\"?")
    }

    @Test("an ImagePath far from anything gets the general hint")
    func unmatchedWithoutCloseMatch() throws {
        let config = try Fixture.configuration(templates: ["Win2016/Datacenter.json"],
                                               imagePaths: ["Win2016", "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"]).load()
        let error = try #require(config.diagnostics(containing: "matches no template").first)
        #expect(error.hint == "ImagePaths are relative to GoldenImages/ and name a template file or a folder.")
    }

    @Test("an empty ImagePath is an error, not 'everything'", arguments: ["", "/", "."])
    func emptyImagePath(path: String) throws {
        let config = try Fixture.configuration(templates: ["Win2016/Datacenter.json"], imagePaths: ["Win2016", path]).load()
        #expect(config.diagnostics(containing: "ImagePath \"\(path)\" matches no template").count == 1)
        #expect(try #require(config.labs.first).imagePaths == ["Win2016"])
    }

    struct FieldCase: Sendable, CustomTestStringConvertible {
        var name: String
        var entry: String
        var severity: Diagnostic.Severity
        var message: String
        var labsKept: Int
        var testDescription: String { name }
    }

    static let fieldCases: [FieldCase] = [
        FieldCase(name: "LabName missing", entry: #"{ "SubscriptionId": "s", "ImagePaths": ["Win2016"] }"#,
                  severity: .error, message: "Labs[0]: LabName is missing.", labsKept: 0),
        FieldCase(name: "LabName empty", entry: #"{ "SubscriptionId": "s", "LabName": "  ", "ImagePaths": ["Win2016"] }"#,
                  severity: .error, message: "Labs[0]: LabName is missing.", labsKept: 0),
        FieldCase(name: "LabName a number", entry: #"{ "SubscriptionId": "s", "LabName": 7, "ImagePaths": ["Win2016"] }"#,
                  severity: .error, message: "Labs[0]: LabName must be a string.", labsKept: 0),
        FieldCase(name: "SubscriptionId missing", entry: #"{ "LabName": "L", "ImagePaths": ["Win2016"] }"#,
                  severity: .error, message: "Labs[0] (L): SubscriptionId is missing.", labsKept: 0),
        FieldCase(name: "SubscriptionId a number", entry: #"{ "SubscriptionId": 42, "LabName": "L", "ImagePaths": ["Win2016"] }"#,
                  severity: .error, message: "Labs[0] (L): SubscriptionId must be a string.", labsKept: 0),
        FieldCase(name: "ImagePaths missing", entry: #"{ "SubscriptionId": "s", "LabName": "L" }"#,
                  severity: .error, message: "Labs[0] (L): ImagePaths is missing.", labsKept: 0),
        FieldCase(name: "ImagePaths a string", entry: #"{ "SubscriptionId": "s", "LabName": "L", "ImagePaths": "Win2016" }"#,
                  severity: .error, message: "Labs[0] (L): ImagePaths must be an array of strings.", labsKept: 0),
        FieldCase(name: "ImagePaths item a number", entry: #"{ "SubscriptionId": "s", "LabName": "L", "ImagePaths": ["Win2016", 7] }"#,
                  severity: .error, message: "Labs[0] (L): ImagePaths[1] must be a string.", labsKept: 1),
        FieldCase(name: "ResourceGroup a number", entry: #"{ "SubscriptionId": "s", "ResourceGroup": 3, "LabName": "L", "ImagePaths": ["Win2016"] }"#,
                  severity: .error, message: "Labs[0] (L): ResourceGroup must be a string.", labsKept: 1),
        FieldCase(name: "entry not an object", entry: #""DevLab""#,
                  severity: .error, message: "Labs[0] is not an object.", labsKept: 0),
        FieldCase(name: "ImagePaths empty", entry: #"{ "SubscriptionId": "s", "LabName": "L", "ImagePaths": [] }"#,
                  severity: .warning, message: "Labs[0] (L): ImagePaths is empty; the lab receives no images.", labsKept: 1),
    ]

    @Test("missing or mistyped lab fields are reported precisely", arguments: fieldCases)
    func missingOrMistypedFields(c: FieldCase) throws {
        var fixture = ConfigFixture(["GoldenImages/Win2016/Datacenter.json": Fixture.template()])
        fixture["Labs.json"] = "{ \"Labs\": [ \(c.entry) ] }"
        let config = try fixture.load()
        let matching = config.diagnostics.filter { $0.message == c.message }
        #expect(matching.count == 1, "\(config.diagnostics)")
        #expect(matching.first?.severity == c.severity)
        #expect(matching.first?.file == "Configuration/Labs.json")
        #expect(config.labs.count == c.labsKept)
        #expect(config.isValid == (c.severity != .error))
    }

    @Test("every problem in Labs.json is reported in one pass")
    func collectsEveryProblem() throws {
        var fixture = ConfigFixture(["GoldenImages/Win2016/Datacenter.json": Fixture.template()])
        fixture["Labs.json"] = """
            { "Labs": [
                { "SubscriptionId": "s", "ImagePaths": ["Win2016"] },
                { "SubscriptionId": 1, "LabName": "B", "ImagePaths": ["Nope"] },
                { "SubscriptionId": "s", "LabName": "C" },
                { "SubscriptionId": "s", "LabName": "D", "ImagePaths": ["Win2016"] }
            ] }
            """
        let config = try fixture.load()
        let messages = config.diagnostics.errors.map(\.message)
        #expect(messages.count == 4, "\(messages)")
        #expect(messages.contains("Labs[0]: LabName is missing."))
        #expect(messages.contains("Labs[1] (B): SubscriptionId must be a string."))
        #expect(messages.contains("Labs[1] (B): ImagePath \"Nope\" matches no template."))
        #expect(messages.contains("Labs[2] (C): ImagePaths is missing."))
        #expect(config.labs.map(\.labName) == ["D"])
    }

    @Test("a Labs.json without a Labs array is an error", arguments: [
        #"{ "Lab": [] }"#, #"[ { "LabName": "x" } ]"#, #""Labs""#,
    ])
    func noLabsArray(text: String) throws {
        var fixture = ConfigFixture(["GoldenImages/Win2016/Datacenter.json": Fixture.template()])
        fixture["Labs.json"] = text
        let config = try fixture.load()
        let error = try #require(config.diagnostics(containing: "has no \"Labs\" array").first)
        #expect(error.severity == .error)
        #expect(error.file == "Configuration/Labs.json")
        #expect(error.line == 1)
        #expect(config.labs.isEmpty)
    }

    @Test("\"Labs\" that is not an array is an error on its line")
    func labsNotArray() throws {
        var fixture = ConfigFixture(["GoldenImages/Win2016/Datacenter.json": Fixture.template()])
        fixture["Labs.json"] = "{\n  \"Labs\": { \"LabName\": \"x\" }\n}\n"
        let config = try fixture.load()
        let error = try #require(config.diagnostics(containing: "\"Labs\" must be an array.").first)
        #expect(error.severity == .error)
        #expect(error.line == 2)
    }

    @Test("a missing Labs.json is an error naming the commit")
    func missingLabsFile() throws {
        let fixture = ConfigFixture(["GoldenImages/Win2016/Datacenter.json": Fixture.template()])
        let config = try fixture.load()
        let error = try #require(config.diagnostics.errors.first)
        #expect(error.message == "Configuration/Labs.json was not found at commit 1234567890ab.")
        #expect(error.file == "Configuration/Labs.json")
        #expect(error.hint?.contains("--config-dir") == true)
    }

    @Test("a configuration without templates is an error")
    func noTemplates() throws {
        let fixture = ConfigFixture(["Labs.json": #"{ "Labs": [] }"#, "GoldenImages/README.md": "not a template"])
        let config = try fixture.load()
        let error = try #require(config.diagnostics(containing: "No golden image templates were found").first)
        #expect(error.severity == .error)
        #expect(error.file == "Configuration/GoldenImages")
    }

    @Test("a template no lab uses is a warning that names the file; the configuration stays valid")
    func unusedTemplate() throws {
        let config = try Fixture.configuration(templates: ["Win2016/Datacenter.json", "Old/Unused Image.json"],
                                               imagePaths: ["Win2016"]).load()
        #expect(config.isValid)
        #expect(config.diagnostics.errors.isEmpty)
        let warning = try #require(config.diagnostics.warnings.first)
        #expect(config.diagnostics.warnings.count == 1)
        #expect(warning.message == "Template Old/Unused Image.json is not used by any lab in Labs.json.")
        #expect(warning.file == "Configuration/GoldenImages/Old/Unused Image.json")
        #expect(warning.hint?.contains("ImagePaths") == true)
        // Unused templates are still loaded: they are built, just not distributed.
        #expect(config.templates.map(\.path) == ["Old/Unused Image.json", "Win2016/Datacenter.json"])
    }

    @Test("files outside GoldenImages or not ending in .json are not templates")
    func onlyJSONUnderGoldenImages() throws {
        var fixture = Fixture.configuration(templates: ["Win2016/Datacenter.json"], imagePaths: ["Win2016"])
        fixture["GoldenImages/Win2016/README.md"] = "# notes"
        fixture["Scripts/helper.json"] = "{ not json at all"
        fixture["GoldenImages/Win2016/Upper.JSON"] = Fixture.template()
        let config = try fixture.load()
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(config.templates.map(\.path) == ["Win2016/Datacenter.json", "Win2016/Upper.JSON"])
    }

    @Test("a working-tree snapshot (no commit) is loaded and says so in its missing-file message")
    func workingTreeSnapshot() throws {
        var fixture = ConfigFixture(["GoldenImages/Win2016/Datacenter.json": Fixture.template()])
        fixture.commit = nil
        let config = try fixture.load()
        #expect(config.commit == nil)
        #expect(config.diagnostics(containing: "Configuration/Labs.json was not found.").count == 1)
    }

    @Test("snapshot notes are passed through as diagnostics")
    func snapshotNotes() {
        let fixture = Fixture.configuration(templates: ["Win2016/Datacenter.json"], imagePaths: ["Win2016"])
        var snapshot = fixture.snapshot
        snapshot.notes = [.note("The working tree has 1 uncommitted change.")]
        let config = ConfigurationLoader.load(snapshot)
        #expect(config.diagnostics == [.note("The working tree has 1 uncommitted change.")])
        #expect(config.isValid)
    }

    @Test("an empty configuration folder name shows repository-relative paths without a prefix")
    func emptyConfigDirectory() {
        let fixture = Fixture.configuration(templates: ["Win2016/Datacenter.json", "Unused.json"], imagePaths: ["Win2016"])
        var snapshot = fixture.snapshot
        snapshot.configDirectory = ""
        let config = ConfigurationLoader.load(snapshot)
        #expect(config.diagnostics.warnings.first?.file == "GoldenImages/Unused.json")
    }
}
