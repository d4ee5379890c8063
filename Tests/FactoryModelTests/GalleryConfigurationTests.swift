import FactoryModel
import Foundation
import Testing

/// Labs.json text with a `Galleries` array, written out so the tests can check the lines diagnostics name.
private enum GalleryFixture {
    static let subscription = "22222222-2222-4222-8222-222222222222"
    static let templates = ["Windows/Server 2022/Datacenter.json", "Windows/Server 2019/Datacenter.json",
                            "Linux/Ubuntu 22.04 LTS.json", "Linux/Debian 12.json"]

    /// The issue's sample, with a real-looking subscription id, beside one lab taking everything.
    static let issueSample = """
        {
          "Labs": [
            {
              "SubscriptionId": "11111111-1111-4111-8111-111111111111",
              "ResourceGroup": "rg-labs",
              "LabName": "DevLab",
              "ImagePaths": ["Windows", "Linux"]
            }
          ],
          "Galleries": [
            {
              "SubscriptionId": "\(subscription)",
              "ResourceGroup": "images-rg",
              "GalleryName": "Contoso.Images",
              "Location": "westeurope",
              "ImagePaths": ["Windows", "Linux/Ubuntu 22.04 LTS.json"],
              "TargetRegions": [{"Name": "westeurope", "ReplicaCount": 2}, {"Name": "northeurope", "StorageAccountType": "Standard_ZRS"}],
              "ReplicaCount": 1,
              "ImagesToSave": 3,
              "ExcludeFromLatest": false,
              "EndOfLifeDays": 180,
              "Publisher": "Contoso",
              "LabServices": true
            }
          ]
        }

        """

    /// A Labs.json with one lab (taking every template) and the given gallery entries, one key per line.
    static func labs(galleries: [String]) -> String {
        """
        {
          "Labs": [
            {"SubscriptionId": "11111111-1111-4111-8111-111111111111", "ResourceGroup": "rg-labs", "LabName": "DevLab", "ImagePaths": ["Windows", "Linux"]}
          ],
          "Galleries": [
        \(galleries.joined(separator: ",\n"))
          ]
        }

        """
    }

    /// One gallery entry; `extra` lines are added before ImagePaths.
    static func gallery(name: String = "Contoso.Images", subscription: String = subscription, group: String = "images-rg",
                        imagePaths: [String] = ["Windows"], extra: [String] = []) -> String {
        var lines = ["    {",
                     "      \"SubscriptionId\": \(Fixture.quoted(subscription)),",
                     "      \"ResourceGroup\": \(Fixture.quoted(group)),",
                     "      \"GalleryName\": \(Fixture.quoted(name)),"]
        lines += extra.map { "      \($0)," }
        lines.append("      \"ImagePaths\": [\(imagePaths.map(Fixture.quoted).joined(separator: ", "))]")
        lines.append("    }")
        return lines.joined(separator: "\n")
    }

    static func configuration(_ labs: String, templates: [String: String] = [:], settings: String? = nil) throws -> FactoryConfiguration {
        var fixture = ConfigFixture(["Labs.json": labs])
        for path in Self.templates { fixture["GoldenImages/" + path] = Fixture.template(osType: path.hasPrefix("Linux") ? "Linux" : "Windows") }
        for (path, text) in templates { fixture["GoldenImages/" + path] = text }
        if let settings { fixture["FactorySettings.json"] = settings }
        return try fixture.load()
    }

    /// The 1-based line of the first line of `text` containing `needle` (after the line holding `after`, when given).
    static func line(of needle: String, in text: String, after: String? = nil) -> Int? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        var start = 0
        if let after, let i = lines.firstIndex(where: { $0.contains(after) }) { start = i + 1 }
        return lines[start...].firstIndex { $0.contains(needle) }.map { $0 + 1 }
    }

    /// A template whose lab VM asks for data disks.
    static func templateWithDataDisks(_ count: Int) -> String {
        let base = try! JSONSerialization.jsonObject(with: Data(Fixture.template().utf8)) as! [String: Any]
        var resources = base["resources"] as! [[String: Any]]
        var properties = resources[0]["properties"] as! [String: Any]
        properties["dataDiskParameters"] = (0..<count).map { _ in ["attachNewDataDiskOptions": ["diskSizeGiB": 256, "diskType": "Premium"]] }
        resources[0]["properties"] = properties
        var root = base
        root["resources"] = resources
        return Fixture.json(root)
    }

    static func record(_ path: String = "Windows/Server 2022/Datacenter.json", at timestamp: String, sizeBytes: Int64? = nil) -> VhdRecord {
        VhdRecord(imageName: "x", imagePath: path, description: "", osType: .windows, vhdFileName: "x.vhd",
                  timestamp: try! Date(timestamp, strategy: .iso8601), osState: .generalized, commit: nil, templateBlobSha: nil,
                  sizeBytes: sizeBytes, md5: nil, runId: nil)
    }
}

@Suite("Galleries in Labs.json")
struct GalleryConfigurationTests {
    // MARK: Parsing

    @Test("the issue's sample loads with every key, its regions normalized and its ImagePaths resolved by whole segments")
    func issueSample() throws {
        let config = try GalleryFixture.configuration(GalleryFixture.issueSample)
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(config.labs.count == 1)
        let gallery = try #require(config.galleries.first)
        #expect(config.galleries.count == 1)
        #expect(gallery.subscriptionId == GalleryFixture.subscription)
        #expect(gallery.resourceGroup == "images-rg")
        #expect(gallery.galleryName == "Contoso.Images")
        #expect(gallery.location == "westeurope")
        #expect(gallery.imagePaths == ["Windows", "Linux/Ubuntu 22.04 LTS.json"])
        #expect(gallery.images == ["Linux/Ubuntu 22.04 LTS.json", "Windows/Server 2019/Datacenter.json", "Windows/Server 2022/Datacenter.json"])
        #expect(gallery.targetRegions == [GalleryRegion(name: "westeurope", replicaCount: 2),
                                          GalleryRegion(name: "northeurope", storageAccountType: "Standard_ZRS")])
        #expect(gallery.replicaCount == 1)
        #expect(gallery.imagesToSave == 3)
        #expect(gallery.excludeFromLatest == false)
        #expect(gallery.endOfLifeDays == 180)
        #expect(gallery.publisher == "Contoso")
        #expect(gallery.labServices)
        #expect(gallery.retireMode == .delete)
        #expect(gallery.line == GalleryFixture.line(of: "Contoso.Images", in: GalleryFixture.issueSample))
        #expect(gallery.subscribes(to: "Windows/Server 2022/Datacenter.json"))
        #expect(!gallery.subscribes(to: "Linux/Debian 12.json"))
        let publishing = gallery.publishingRegions
        #expect(publishing.addedSource == false)
        #expect(publishing.regions.map(\.regionalReplicaCount) == [2, 1])
    }

    @Test("keys are read in any case, and target regions may be plain strings in display form")
    func keysInAnyCase() throws {
        let text = """
            {
              "labs": [{"subscriptionid": "11111111-1111-4111-8111-111111111111", "labname": "DevLab", "imagepaths": ["Windows", "Linux"]}],
              "GALLERIES": [
                {
                  "subscriptionID": "\(GalleryFixture.subscription)",
                  "resourcegroup": "images-rg",
                  "galleryname": "Images",
                  "LOCATION": "North Europe",
                  "imagepaths": ["Linux"],
                  "targetregions": ["West Europe", {"name": "uksouth", "replicacount": 3, "storageaccounttype": "premium_lrs"}],
                  "replicacount": 2, "imagestosave": 4, "excludefromlatest": true, "endoflifedays": 30,
                  "publisher": "Contoso", "labservices": false, "retiremode": "excludefromlatest"
                }
              ]
            }
            """
        let config = try GalleryFixture.configuration(text)
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        let gallery = try #require(config.galleries.first)
        #expect(gallery.galleryName == "Images")
        #expect(gallery.location == "northeurope")
        #expect(gallery.images == ["Linux/Debian 12.json", "Linux/Ubuntu 22.04 LTS.json"])
        #expect(gallery.targetRegions == [GalleryRegion(name: "westeurope"),
                                          GalleryRegion(name: "uksouth", replicaCount: 3, storageAccountType: "Premium_LRS")])
        #expect(gallery.replicaCount == 2 && gallery.imagesToSave == 4 && gallery.excludeFromLatest && gallery.endOfLifeDays == 30)
        #expect(gallery.retireMode == .excludeFromLatest)
        // The source region is added first (Azure requires it) with the gallery's replica count.
        let publishing = gallery.publishingRegions
        #expect(publishing.addedSource)
        #expect(publishing.regions.map(\.name) == ["northeurope", "westeurope", "uksouth"])
        #expect(publishing.regions.map(\.regionalReplicaCount) == [2, 2, 3])
    }

    @Test("an entry with only the required keys takes the defaults: the factory's location and imagesToSave, 1 replica, Delete")
    func defaults() throws {
        let text = GalleryFixture.labs(galleries: [GalleryFixture.gallery()])
        let config = try GalleryFixture.configuration(text, settings: #"{"location": "Sweden Central", "imagesToSave": 5}"#)
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        let gallery = try #require(config.galleries.first)
        #expect(gallery.location == "swedencentral")
        #expect(gallery.imagesToSave == 5)
        #expect(gallery.replicaCount == 1)
        #expect(gallery.targetRegions.isEmpty)
        #expect(gallery.excludeFromLatest == false)
        #expect(gallery.endOfLifeDays == nil)
        #expect(gallery.publisher == nil)
        #expect(gallery.labServices == false)
        #expect(gallery.retireMode == .delete)
        #expect(gallery.publishingRegions.regions == [TargetRegion(name: "swedencentral", regionalReplicaCount: 1)])
    }

    @Test("a Labs.json without Galleries loads as before: no galleries, no new diagnostics, the same unused-template warning")
    func oldFileUnchanged() throws {
        let config = try Fixture.configuration(templates: ["Win2016/Datacenter.json", "Win2016R2/Core.json"], imagePaths: ["Win2016"]).load()
        #expect(config.galleries.isEmpty)
        #expect(config.diagnostics.map(\.message) == ["Template Win2016R2/Core.json is not used by any lab in Labs.json."])
        let report = try JSONSerialization.jsonObject(with: JSONEncoder().encode(ConfigurationReport(config))) as? [String: Any]
        #expect(report?["galleries"] == nil, "validate --json keeps its old shape")
    }

    @Test("a template only a gallery takes is used; validate --json lists galleries with their definitions")
    func galleryCountsAsUse() throws {
        let text = """
            {
              "Labs": [{"SubscriptionId": "11111111-1111-4111-8111-111111111111", "LabName": "DevLab", "ImagePaths": ["Windows"]}],
              "Galleries": [
            \(GalleryFixture.gallery(imagePaths: ["Linux/Debian 12.json"]))
              ]
            }
            """
        let config = try GalleryFixture.configuration(text)
        #expect(config.diagnostics.map(\.message) == ["Template Linux/Ubuntu 22.04 LTS.json is not used by any lab or gallery in Labs.json."])
        let report = ConfigurationReport(config)
        #expect(report.galleries?.first?.definitions == ["Linux/Debian 12.json": "Linux-Debian-12"])
    }

    @Test("ImagePaths match by whole segments and say what did not match, with the line")
    func imagePathsBySegments() throws {
        let text = GalleryFixture.labs(galleries: [GalleryFixture.gallery(imagePaths: ["Windows/Server 20", "linux/ubuntu 22.04 lts.json"])])
        let config = try GalleryFixture.configuration(text)
        let gallery = try #require(config.galleries.first)
        #expect(gallery.images == ["Linux/Ubuntu 22.04 LTS.json"])
        #expect(gallery.imagePaths == ["Linux/Ubuntu 22.04 LTS.json"])
        let error = try #require(config.diagnostics(containing: "matches no template").first)
        #expect(error.severity == .error)
        #expect(error.message == "Galleries[0] (Contoso.Images): ImagePath \"Windows/Server 20\" matches no template.")
        #expect(error.line == GalleryFixture.line(of: "Windows/Server 20", in: text))
        #expect(error.file == "Configuration/Labs.json")
        let caseWarning = try #require(config.diagnostics(containing: "only ignoring case").first)
        #expect(caseWarning.hint == "Write it as \"Linux/Ubuntu 22.04 LTS.json\".")
    }

    @Test("a gallery whose ImagePaths match nothing is a warning on its line")
    func matchesNothing() throws {
        let text = GalleryFixture.labs(galleries: [GalleryFixture.gallery(imagePaths: [])])
        let config = try GalleryFixture.configuration(text)
        let warning = try #require(config.diagnostics(containing: "match no template; the gallery receives no images").first)
        #expect(warning.severity == .warning)
        #expect(warning.line == GalleryFixture.line(of: "Contoso.Images", in: text))
        #expect(config.isValid)
    }

    // MARK: Validation, each rule with its line

    @Test("gallery names follow Azure's rule: letters, digits, periods and underscores; no hyphens; not starting or ending with a period", arguments: [
        ("Contoso-Images", "cannot contain hyphens"),
        (".Images", "must start with a letter or digit"),
        ("_Images", "must start with a letter or digit"),
        ("Images.", "cannot end with a period"),
        ("Images Gallery", "may contain only letters, digits, periods and underscores"),
        ("Bilder\u{00E4}", "may contain only letters, digits, periods and underscores"),
        (String(repeating: "a", count: 81), "must be 1 to 80 characters long (it has 81)"),
    ])
    func galleryNames(name: String, problem: String) throws {
        let text = GalleryFixture.labs(galleries: [GalleryFixture.gallery(name: name)])
        let config = try GalleryFixture.configuration(text)
        let error = try #require(config.diagnostics(containing: "GalleryName").first)
        #expect(error.severity == .error)
        #expect(error.message.contains(problem), "\(error.message)")
        #expect(error.line == GalleryFixture.line(of: "\"GalleryName\"", in: text))
        if name == "Contoso-Images" { #expect(error.hint?.contains("\"Contoso_Images\"") == true) }
    }

    @Test("valid gallery names pass", arguments: ["Contoso.Images", "a", "Images_2026", "9lives", "A_", String(repeating: "a", count: 80)])
    func validGalleryNames(name: String) {
        #expect(Naming.galleryNameProblem(name) == nil)
    }

    @Test("subscription id and resource group are checked as for labs")
    func subscriptionAndGroup() throws {
        let text = GalleryFixture.labs(galleries: [GalleryFixture.gallery(subscription: "not-a-guid", group: "images/rg")])
        let config = try GalleryFixture.configuration(text)
        let line = GalleryFixture.line(of: "\"GalleryName\"", in: text)
        let sub = try #require(config.diagnostics(containing: "SubscriptionId \"not-a-guid\" is not a subscription id").first)
        let group = try #require(config.diagnostics(containing: "ResourceGroup \"images/rg\" may contain only").first)
        #expect(sub.severity == .error && group.severity == .error)
        #expect(sub.line == line && group.line == line)
    }

    @Test("required keys missing or of the wrong type are errors, and the entry is dropped")
    func requiredKeys() throws {
        let text = """
            {
              "Labs": [],
              "Galleries": [
                {"SubscriptionId": "\(GalleryFixture.subscription)", "GalleryName": "NoGroup", "ImagePaths": ["Windows"]},
                {"SubscriptionId": "\(GalleryFixture.subscription)", "ResourceGroup": "rg", "GalleryName": 7, "ImagePaths": "Windows"},
                "not an object"
              ]
            }
            """
        let config = try GalleryFixture.configuration(text)
        #expect(config.galleries.isEmpty)
        let messages = config.diagnostics.errors.map(\.message)
        #expect(messages.contains("Galleries[0] (NoGroup): ResourceGroup is missing."))
        #expect(messages.contains("Galleries[1]: GalleryName must be a string."))
        #expect(messages.contains("Galleries[1]: ImagePaths must be an array of strings."))
        #expect(messages.contains("Galleries[2] is not an object."))
        #expect(config.diagnostics(containing: "NoGroup").first?.line == GalleryFixture.line(of: "NoGroup", in: text))
    }

    @Test("\"Galleries\" must be an array")
    func galleriesNotArray() throws {
        let config = try GalleryFixture.configuration("{\n  \"Labs\": [],\n  \"Galleries\": {}\n}\n")
        let error = try #require(config.diagnostics(containing: "\"Galleries\" must be an array.").first)
        #expect(error.line == 3)
    }

    @Test("the same gallery twice (names compared ignoring case) is an error naming the first line")
    func duplicateGallery() throws {
        let text = GalleryFixture.labs(galleries: [GalleryFixture.gallery(name: "Contoso.Images"),
                                                   GalleryFixture.gallery(name: "contoso.images", group: "IMAGES-RG", imagePaths: ["Linux"])])
        let config = try GalleryFixture.configuration(text)
        #expect(config.galleries.count == 1)
        let error = try #require(config.diagnostics(containing: "is listed twice").first)
        #expect(error.severity == .error)
        #expect(error.message.contains("(first at line \(GalleryFixture.line(of: "Contoso.Images", in: text)!))"))
        #expect(error.line == GalleryFixture.line(of: "contoso.images", in: text))
    }

    @Test("replica counts must be 1 to 100, per region and for the gallery")
    func replicaCounts() throws {
        let text = GalleryFixture.labs(galleries: [GalleryFixture.gallery(extra: [
            "\"TargetRegions\": [\n        {\"Name\": \"westeurope\", \"ReplicaCount\": 0},\n        {\"Name\": \"northeurope\", \"ReplicaCount\": 101},\n        {\"Name\": \"uksouth\", \"ReplicaCount\": 100}\n      ]",
            "\"ReplicaCount\": 0",
        ])])
        let config = try GalleryFixture.configuration(text)
        let west = try #require(config.diagnostics(containing: "(westeurope): ReplicaCount 0 is out of range").first)
        #expect(west.line == GalleryFixture.line(of: "\"westeurope\"", in: text))
        let north = try #require(config.diagnostics(containing: "(northeurope): ReplicaCount 101 is out of range").first)
        #expect(north.line == GalleryFixture.line(of: "\"northeurope\"", in: text))
        #expect(config.diagnostics(containing: "(uksouth)").isEmpty)
        let gallery = try #require(config.diagnostics(containing: ": ReplicaCount 0 is out of range: Azure allows 1 to 100").first)
        #expect(gallery.line == GalleryFixture.line(of: "Contoso.Images", in: text))
        #expect(config.diagnostics.errors.count == 3)
    }

    @Test("storage account types are Standard_LRS, Standard_ZRS or Premium_LRS")
    func storageAccountTypes() throws {
        let text = GalleryFixture.labs(galleries: [GalleryFixture.gallery(extra: [
            "\"TargetRegions\": [{\"Name\": \"westeurope\", \"StorageAccountType\": \"Standard_GRS\"}, {\"Name\": \"uksouth\", \"StorageAccountType\": \"standard_zrs\"}]",
        ])])
        let config = try GalleryFixture.configuration(text)
        let error = try #require(config.diagnostics(containing: "StorageAccountType \"Standard_GRS\" is not one of Standard_LRS, Standard_ZRS, Premium_LRS").first)
        #expect(error.line == GalleryFixture.line(of: "Standard_GRS", in: text))
        #expect(config.diagnostics.errors.count == 1)
        #expect(config.galleries.first?.targetRegions.last?.storageAccountType == "Standard_ZRS")
    }

    @Test("a region that is not an Azure region is an error with a did-you-mean hint, for Location and TargetRegions")
    func unknownRegions() throws {
        let text = GalleryFixture.labs(galleries: [GalleryFixture.gallery(extra: [
            "\"Location\": \"westeurpe\"",
            "\"TargetRegions\": [\"North Europe\", \"mars-central\", {\"Name\": \"eastus3x\"}, \"northeurope\"]",
        ])])
        let config = try GalleryFixture.configuration(text)
        let location = try #require(config.diagnostics(containing: "Location \"westeurpe\" is not an Azure region.").first)
        #expect(location.hint == "Did you mean \"westeurope\"?")
        #expect(location.line == GalleryFixture.line(of: "westeurpe", in: text))
        let mars = try #require(config.diagnostics(containing: "TargetRegions[1] \"mars-central\" is not an Azure region.").first)
        #expect(mars.hint?.hasPrefix("Use an Azure region name") == true)
        let typo = try #require(config.diagnostics(containing: "TargetRegions[2] \"eastus3x\" is not an Azure region.").first)
        #expect(typo.hint?.hasPrefix("Did you mean \"eastus") == true)
        let duplicate = try #require(config.diagnostics(containing: "TargetRegions lists northeurope twice").first)
        #expect(duplicate.severity == .error)
        #expect(config.diagnostics.errors.count == 4)
    }

    @Test("a target region in another cloud (China, US Government) is an error: versions do not replicate between clouds")
    func crossCloud() throws {
        let text = GalleryFixture.labs(galleries: [GalleryFixture.gallery(extra: [
            "\"Location\": \"westeurope\"", "\"TargetRegions\": [\"northeurope\", \"chinanorth3\", \"usgovvirginia\"]",
        ])])
        let config = try GalleryFixture.configuration(text)
        let china = try #require(config.diagnostics(containing: "TargetRegions[1] chinanorth3 is in Azure China").first)
        #expect(china.message.hasSuffix("but the gallery (westeurope) is in Azure public cloud; versions cannot replicate between clouds."))
        #expect(config.diagnostics(containing: "TargetRegions[2] usgovvirginia is in Azure US Government").count == 1)
        #expect(config.diagnostics.errors.count == 2)
        #expect(config.galleries.first?.targetRegions.map(\.name) == ["northeurope"])
        #expect(AzureRegions.cloud(of: "China East 2") == .china)
        #expect(AzureRegions.cloud(of: "nowhere") == nil)
    }

    @Test("the embedded region list knows public, China and US Government regions in any spelling")
    func regionList() {
        for region in ["westeurope", "West Europe", "EASTUS2", "newzealandnorth", "mexicocentral", "chinanorth3", "usgovvirginia", "italynorth"] {
            #expect(AzureRegions.isKnown(region), "\(region)")
        }
        #expect(!AzureRegions.isKnown("westeurpe"))
        #expect(AzureRegions.suggestion(for: "West Eurpoe") == "westeurope")
        #expect(AzureRegions.suggestion(for: "moon") == nil)
    }

    @Test("ImagesToSave and EndOfLifeDays must be at least 1; RetireMode is Delete or ExcludeFromLatest; switches are booleans")
    func numbersAndSwitches() throws {
        let text = GalleryFixture.labs(galleries: [GalleryFixture.gallery(extra: [
            "\"ImagesToSave\": 0", "\"EndOfLifeDays\": 0", "\"RetireMode\": \"Archive\"", "\"LabServices\": \"yes\"",
            "\"ExcludeFromLatest\": 1", "\"ReplicaCount\": true", "\"Publisher\": \"Contoso Ltd\"", "\"TargetRegion\": \"westeurope\"",
        ])])
        let config = try GalleryFixture.configuration(text)
        let line = GalleryFixture.line(of: "Contoso.Images", in: text)
        let expected = [
            "ImagesToSave 0 is out of range: a gallery keeps at least 1 version per image.",
            "EndOfLifeDays 0 is out of range: versions reach end of life 1 to 36500 days after publishing.",
            "RetireMode \"Archive\" is not one of Delete, ExcludeFromLatest.",
            "LabServices must be true or false.",
            "ExcludeFromLatest must be true or false.",
            "ReplicaCount must be a whole number.",
            "Publisher \"Contoso Ltd\" may contain only letters, digits, periods, hyphens and underscores.",
        ]
        for message in expected {
            let d = try #require(config.diagnostics(containing: "Galleries[0] (Contoso.Images): " + message).first, "\(message)")
            #expect(d.severity == .error)
            if !message.hasPrefix("RetireMode") { #expect(d.line == line, "\(message)") }
        }
        #expect(config.diagnostics(containing: "RetireMode").first?.line == GalleryFixture.line(of: "Archive", in: text))
        let unknown = try #require(config.diagnostics(containing: "unknown key \"TargetRegion\" is ignored").first)
        #expect(unknown.severity == .warning)
        #expect(unknown.line == GalleryFixture.line(of: "\"TargetRegion\"", in: text))
        #expect(config.diagnostics.errors.count == expected.count)
    }

    // MARK: Definitions

    private func template(_ path: String, osType: OSType = .windows, osState: OSState = .generalized, sku: String = "2022-datacenter",
                          metadata: GalleryImageMetadata? = nil) -> GoldenImageTemplate {
        GoldenImageTemplate(path: path, blobSha: "0", osType: osType, osState: osState, vmName: "vm", imageName: "img", description: "",
                            galleryImageReference: GalleryImageReference(publisher: "MicrosoftWindowsServer", offer: "WindowsServer", sku: sku, osType: osType.rawValue),
                            artifacts: [], templateJSON: Data(), galleryImage: metadata)
    }

    private let gallery = GalleryTarget(subscriptionId: GalleryFixture.subscription, resourceGroup: "rg", galleryName: "G", location: "westeurope", imagePaths: [])

    @Test("definitions are derived from the template path", arguments: [
        ("Windows/Server 2022/Datacenter.json", "Windows-Server-2022-Datacenter", "Windows-Server-2022", "Datacenter"),
        ("Datacenter.json", "Datacenter", "Datacenter", "Datacenter"),
        ("Linux/Ubuntu 22.04 LTS.json", "Linux-Ubuntu-22.04-LTS", "Linux", "Ubuntu-22.04-LTS"),
        ("Win (Test)/VS 2022 & Tools!.json", "Win-Test-VS-2022-Tools", "Win-Test", "VS-2022-Tools"),
        ("Win2016/SQLServer 2016 Express.JSON", "Win2016-SQLServer-2016-Express", "Win2016", "SQLServer-2016-Express"),
        ("_Team_/--x--.json", "Team_-x", "Team", "x"),
    ])
    func derivedDefinitions(path: String, name: String, offer: String, sku: String) {
        let plan = gallery.definition(for: template(path))
        #expect(plan.name == name)
        #expect(plan.offer == offer)
        #expect(plan.sku == sku)
        #expect(plan.publisher == "ImageFactory")
        #expect(plan.osType == .windows && plan.osState == .generalized)
        #expect(plan.hyperVGeneration == nil && plan.recommendedVCPUs == nil && plan.recommendedMemoryGB == nil && plan.endOfLife == nil)
        #expect(Naming.galleryImageNameProblem(plan.name) == nil)
    }

    @Test("a long path is cut to 80 characters, ending with a letter or digit")
    func longPath() {
        let path = String(repeating: "Folder ", count: 10) + "/" + String(repeating: "x", count: 30) + ".json"
        let plan = gallery.definition(for: template(path))
        #expect(plan.name.count <= 80)
        #expect(Naming.galleryImageNameProblem(plan.name) == nil)
    }

    @Test("publisher: the template's, else the gallery's, else ImageFactory; OS and capture mode from the template; V2 from a Gen2 SKU")
    func publisherAndOS() {
        var withPublisher = gallery
        withPublisher.publisher = "Contoso"
        let linux = template("Linux/Ubuntu.json", osType: .linux, osState: .specialized, sku: "22_04-lts-gen2")
        #expect(withPublisher.definition(for: linux).publisher == "Contoso")
        #expect(withPublisher.definition(for: template("a.json", metadata: GalleryImageMetadata(publisher: "Fabrikam"))).publisher == "Fabrikam")
        let plan = gallery.definition(for: linux)
        #expect(plan.osType == .linux && plan.osState == .specialized)
        #expect(plan.hyperVGeneration == "V2")
        #expect(gallery.definition(for: template("a.json", sku: "2022-datacenter-g2")).hyperVGeneration == "V2")
        #expect(gallery.definition(for: template("a.json", sku: "2022-datacenter-g2", metadata: GalleryImageMetadata(hyperVGeneration: "V1"))).hyperVGeneration == "V1")
    }

    @Test("metadata.imageFactory overrides every derived value and is read from the template")
    func metadataOverrides() throws {
        let metadata: [String: Any] = ["definitionName": "Server2022", "Publisher": "Contoso", "offer": "Servers", "SKU": "dc-2022",
                                       "hyperVGeneration": "v2", "recommendedVCPUs": 4, "recommendedMemoryGB": 16, "endOfLife": "2027-06-30"]
        let text = GalleryFixture.labs(galleries: [GalleryFixture.gallery()])
        let config = try GalleryFixture.configuration(text, templates: ["Windows/Server 2022/Datacenter.json": Fixture.template(imageFactory: metadata)])
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        let template = try #require(config.template(at: "Windows/Server 2022/Datacenter.json"))
        let endOfLife = try Date("2027-06-30T00:00:00Z", strategy: .iso8601)
        #expect(template.galleryImage == GalleryImageMetadata(definitionName: "Server2022", publisher: "Contoso", offer: "Servers", sku: "dc-2022",
                                                               hyperVGeneration: "V2", recommendedVCPUs: 4, recommendedMemoryGB: 16, endOfLife: endOfLife))
        let plan = try #require(config.galleries.first).definition(for: template)
        #expect(plan == GalleryImageDefinitionPlan(name: "Server2022", publisher: "Contoso", offer: "Servers", sku: "dc-2022", osType: .windows,
                                                   osState: .generalized, hyperVGeneration: "V2", recommendedVCPUs: 4, recommendedMemoryGB: 16,
                                                   endOfLife: endOfLife))
        // Versions take the template's end of life over the gallery's EndOfLifeDays.
        var days = try #require(config.galleries.first)
        days.endOfLifeDays = 10
        #expect(days.versionEndOfLife(for: template, publishedAt: Date(timeIntervalSince1970: 0)) == endOfLife)
        let plain = try #require(config.template(at: "Windows/Server 2019/Datacenter.json"))
        #expect(days.versionEndOfLife(for: plain, publishedAt: Date(timeIntervalSince1970: 0)) == Date(timeIntervalSince1970: 864_000))
        #expect(config.template(at: "Linux/Debian 12.json")?.galleryImage == nil)
        // A date and time with its zone is accepted too.
        let timed = try GalleryFixture.configuration(text, templates: ["Linux/Debian 12.json": Fixture.template(osType: "Linux", imageFactory: ["endOfLife": "2027-06-30T12:00:00+02:00"])])
        #expect(timed.template(at: "Linux/Debian 12.json")?.galleryImage?.endOfLife == (try Date("2027-06-30T10:00:00Z", strategy: .iso8601)))
    }

    @Test("wrong types and values in metadata.imageFactory are errors at their template line", arguments: [
        ("definitionName", "5", "metadata.imageFactory.definitionName must be a string."),
        ("definitionName", #""-Bad name""#, "metadata.imageFactory.definitionName \"-Bad name\" may contain only letters, digits, periods, hyphens and underscores."),
        ("definitionName", #""Server.""#, "metadata.imageFactory.definitionName \"Server.\" must start and end with a letter or digit."),
        ("offer", #""My Offer""#, "metadata.imageFactory.offer \"My Offer\" may contain only letters, digits, periods, hyphens and underscores."),
        ("sku", #""""#, "metadata.imageFactory.sku \"\" must be 1 to 128 characters long (it has 0)."),
        ("hyperVGeneration", #""V3""#, "metadata.imageFactory.hyperVGeneration must be \"V1\" or \"V2\"."),
        ("recommendedVCPUs", #""4""#, "metadata.imageFactory.recommendedVCPUs must be a whole number of vCPUs of at least 1."),
        ("recommendedMemoryGB", "0", "metadata.imageFactory.recommendedMemoryGB must be a whole number of GB of at least 1."),
        ("recommendedMemoryGB", "1.5", "metadata.imageFactory.recommendedMemoryGB must be a whole number of GB of at least 1."),
        ("endOfLife", #""next year""#, "metadata.imageFactory.endOfLife must be an ISO 8601 date"),
        ("endOfLife", #""2027-13-40""#, "metadata.imageFactory.endOfLife must be an ISO 8601 date"),
    ])
    func badMetadata(key: String, valueJSON: String, message: String) throws {
        let value = try JSONSerialization.jsonObject(with: Data(valueJSON.utf8), options: .fragmentsAllowed)
        let templateText = Fixture.template(imageFactory: [key: value])
        let config = try GalleryFixture.configuration(GalleryFixture.labs(galleries: [GalleryFixture.gallery()]),
                                                      templates: ["Windows/Server 2022/Datacenter.json": templateText])
        let error = try #require(config.diagnostics.errors.first)
        #expect(config.diagnostics.errors.count == 1, "\(config.diagnostics)")
        #expect(error.message.hasPrefix(message), "\(error.message)")
        #expect(error.file == "Configuration/GoldenImages/Windows/Server 2022/Datacenter.json")
        #expect(error.line == GalleryFixture.line(of: "\"\(key)\"", in: templateText))
    }

    @Test("two templates of one gallery on one definition name, or on one publisher/offer/sku, are errors naming both files")
    func definitionCollisions() throws {
        let text = GalleryFixture.labs(galleries: [GalleryFixture.gallery(imagePaths: ["Windows", "Linux"])])
        let config = try GalleryFixture.configuration(text, templates: [
            "Windows/Server 2019/Datacenter.json": Fixture.template(imageFactory: ["definitionName": "Windows-Server-2022-Datacenter"]),
            "Linux/Debian 12.json": Fixture.template(osType: "Linux", imageFactory: ["offer": "Linux", "sku": "Ubuntu-22.04-LTS"]),
        ])
        let line = GalleryFixture.line(of: "Contoso.Images", in: text)
        let name = try #require(config.diagnostics(containing: "both map to image definition").first)
        #expect(name.message == "Gallery Contoso.Images: Windows/Server 2019/Datacenter.json and Windows/Server 2022/Datacenter.json both map to image definition \"Windows-Server-2022-Datacenter\"; their versions would mix.")
        #expect(name.line == line && name.severity == .error)
        let triple = try #require(config.diagnostics(containing: "both have publisher/offer/sku").first)
        #expect(triple.message == "Gallery Contoso.Images: Linux/Debian 12.json and Linux/Ubuntu 22.04 LTS.json both have publisher/offer/sku ImageFactory/Linux/Ubuntu-22.04-LTS; Azure requires it unique in a gallery.")
        #expect(triple.line == line && triple.severity == .error)
        #expect(config.diagnostics.errors.count == 2)
    }

    @Test("the same template in two galleries is no collision")
    func twoGalleries() throws {
        let text = GalleryFixture.labs(galleries: [GalleryFixture.gallery(name: "One"), GalleryFixture.gallery(name: "Two")])
        let config = try GalleryFixture.configuration(text)
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(config.galleries.map(\.galleryName) == ["One", "Two"])
        #expect(config.galleries.map(\.line) == [GalleryFixture.line(of: "\"One\"", in: text), GalleryFixture.line(of: "\"Two\"", in: text)])
    }

    // MARK: Lab Services

    @Test("a Lab Services gallery warns about templates asking for data disks; other galleries do not")
    func labServicesDataDisks() throws {
        let text = GalleryFixture.labs(galleries: [GalleryFixture.gallery(name: "ForLabs", extra: ["\"LabServices\": true"]),
                                                   GalleryFixture.gallery(name: "Plain")])
        let config = try GalleryFixture.configuration(text, templates: ["Windows/Server 2019/Datacenter.json": GalleryFixture.templateWithDataDisks(2)])
        #expect(config.template(at: "Windows/Server 2019/Datacenter.json")?.requestedDataDisks == 2)
        #expect(config.template(at: "Windows/Server 2022/Datacenter.json")?.requestedDataDisks == nil)
        let warnings = config.diagnostics.warnings
        #expect(warnings.count == 1, "\(warnings)")
        #expect(warnings.first?.message == "Gallery ForLabs is for Azure Lab Services, but Windows/Server 2019/Datacenter.json asks for 2 data disks (properties.dataDiskParameters).")
        #expect(warnings.first?.line == GalleryFixture.line(of: "ForLabs", in: text))
        #expect(config.isValid)
    }

    @Test("Lab Services refuses an OS disk over 128 GB, known from the record or the VHD's length")
    func labServicesDiskSize() {
        var labs = gallery
        labs.labServices = true
        let gib: Int64 = 1_073_741_824
        #expect(labs.labServicesProblems(record: GalleryFixture.record(at: "2026-12-02T14:35:01Z", sizeBytes: 127 * gib + 512)).isEmpty)
        #expect(labs.labServicesProblems(record: GalleryFixture.record(at: "2026-12-02T14:35:01Z", sizeBytes: 128 * gib + 512)).isEmpty)
        let big = GalleryFixture.record(at: "2026-12-02T14:35:01Z", sizeBytes: 256 * gib + 512)
        #expect(labs.labServicesProblems(record: big) == ["its OS disk is 256 GB; Azure Lab Services offers only images with an OS disk of at most 128 GB"])
        #expect(gallery.labServicesProblems(record: big).isEmpty, "only galleries marked LabServices")
        let original = GalleryFixture.record(at: "2026-12-02T14:35:01Z")
        #expect(labs.labServicesProblems(record: original).isEmpty)
        #expect(labs.labServicesProblems(record: original, vhdBytes: 200 * gib).count == 1)
    }

    // MARK: Version numbers

    @Test("a version is YYYY.MMDD.HHMMSS of the capture time in UTC, without leading zeros")
    func versionScheme() {
        #expect(GalleryVersioning.version(for: GalleryFixture.record(at: "2026-12-02T14:35:01Z")) == "2026.1202.143501")
        #expect(GalleryVersioning.version(for: GalleryFixture.record(at: "2027-01-01T00:00:05Z")) == "2027.101.5")
        #expect(GalleryVersioning.version(for: GalleryFixture.record(at: "2026-12-02T16:35:01+02:00")) == "2026.1202.143501")
        #expect(GalleryVersioning.version(capturedAt: Date(timeIntervalSince1970: 1_795_323_000.9)) == "2026.1122.45000")
    }

    @Test("the version is deterministic: the same record gives the same version, also after a round trip through its JSON")
    func versionDeterministic() throws {
        let record = GalleryFixture.record(at: "2026-12-02T14:35:01Z")
        let again = try VhdRecord.decode(record.encoded())
        #expect(GalleryVersioning.version(for: record) == GalleryVersioning.version(for: again))
        #expect(GalleryVersioning.captureDate(of: GalleryVersioning.version(for: record)) == record.timestamp)
    }

    @Test("versions grow with capture time to the second, across day, month and year boundaries, and fit Int32")
    func versionOrdering() throws {
        let times = ["2026-12-31T23:59:58Z", "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z", "2027-01-01T00:00:01Z", "2027-01-09T12:00:00Z",
                     "2027-01-10T09:00:00Z", "2027-02-01T00:00:00Z", "2027-10-01T00:00:00Z", "2028-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]
        let versions = times.map { GalleryVersioning.version(for: GalleryFixture.record(at: $0)) }
        #expect(versions.count == Set(versions).count)
        for (a, b) in zip(versions, versions.dropFirst()) {
            #expect(GalleryVersioning.compare(a, b) == .orderedAscending, "\(a) < \(b)")
            #expect(GalleryVersioning.compare(b, a) == .orderedDescending)
        }
        #expect(versions.shuffled().sorted(by: GalleryVersioning.areInIncreasingOrder) == versions)
        #expect(versions.last == "9999.1231.235959")
        for version in versions {
            #expect(GalleryVersioning.isValid(version), "\(version)")
            #expect(version.split(separator: ".").allSatisfy { Int32($0) != nil })
        }
        // Text order would put 1 October (1001) before 1 January (101); numeric order does not.
        #expect("2027.1001.0" < "2027.101.0")
        #expect(GalleryVersioning.compare("2027.101.0", "2027.1001.0") == .orderedAscending)
        #expect(GalleryVersioning.compare("2026.1202.9", "2026.1202.10") == .orderedAscending)
        #expect(GalleryVersioning.compare("1.0.0", "1.0.0") == .orderedSame)
    }

    @Test("isValid: three non-negative integers up to Int32.max")
    func versionValidity() {
        for valid in ["1.0.0", "0.0.0", "2026.1202.143501", "2147483647.2147483647.2147483647", "01.2.3"] {
            #expect(GalleryVersioning.isValid(valid), "\(valid)")
        }
        for invalid in ["1.0", "1.0.0.0", "2147483648.0.0", "-1.0.0", "+1.0.0", "1..0", "a.b.c", "1.0.0 ", "", "1.0.0-beta", "99999999999999999999.0.0"] {
            #expect(!GalleryVersioning.isValid(invalid), "\(invalid)")
        }
        #expect(GalleryVersioning.compare("latest", "1.0.0") == .orderedAscending, "invalid versions order first")
    }

    @Test("captureDate reads back a factory version and ignores others")
    func captureDates() throws {
        #expect(GalleryVersioning.captureDate(of: "2027.101.5") == (try Date("2027-01-01T00:00:05Z", strategy: .iso8601)))
        #expect(GalleryVersioning.captureDate(of: "1.0.0") == nil)
        #expect(GalleryVersioning.captureDate(of: "2026.1340.0") == nil)
        #expect(GalleryVersioning.captureDate(of: "2026.0231.0") == nil, "31 February")
    }
}
