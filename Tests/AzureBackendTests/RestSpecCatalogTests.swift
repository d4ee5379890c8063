// RestSpecCatalog's own tests: Azure's official examples pass it, and each kind of client mistake the Azure
// backend's tests rely on it to catch is reported with a message that names the request and the spec.
import Foundation
import Testing

/// Tests/AzureBackendTests/Specs, located from this file so the tests run from any working directory.
private let specsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Specs")
private let examplesDirectory = specsDirectory.appendingPathComponent("examples")

@Suite("RestSpecCatalog")
struct RestSpecCatalogTests {
    var catalog: RestSpecCatalog { get throws { try RestSpecCatalog.bundled.get() } }

    // MARK: Loading

    @Test func loadsEveryFamilyWithItsExtractVersion() throws {
        let catalog = try RestSpecCatalog(directory: specsDirectory)
        let versions = Dictionary(catalog.allOperations.map { ($0.family, $0.apiVersion) }) { first, _ in first }
        #expect(versions == [
            "authorization-permissions": "2022-04-01", "compute-disks": "2026-03-02", "compute-galleries": "2026-03-03",
            "compute-vms": "2026-04-01", "deployments": "2026-09-01", "devtestlab": "2018-09-15", "storage": "2026-09-01",
        ])
        #expect(catalog.allOperations.allSatisfy { $0.specFile.contains($0.apiVersion) })
        #expect(catalog.operations(named: "VirtualMachines_Get").map(\.family).sorted() == ["compute-vms", "devtestlab"])
    }

    @Test func brokenSpecsFolderThrowsAReadableError() throws {
        #expect(throws: RestSpecCatalog.LoadError.self) {
            try RestSpecCatalog(directory: specsDirectory.appendingPathComponent("no-such-folder"))
        }
        // Without the refMap the common-types $refs dangle: loading fails instead of every request looking wrong.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("RestSpecCatalogTests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.copyItem(at: specsDirectory.appendingPathComponent("compute-diskrp-2026-03-02.json"),
                                         to: folder.appendingPathComponent("compute-diskrp-2026-03-02.json"))
        try Data(#"{"families":{"compute-disks":{"specFile":"compute-diskrp-2026-03-02.json"}}}"#.utf8)
            .write(to: folder.appendingPathComponent("versions.json"))
        let error = #expect(throws: RestSpecCatalog.LoadError.self) { try RestSpecCatalog(directory: folder) }
        #expect(error?.description.contains("cannot resolve parameter $ref ../../../../../../common-types/resource-management/v3/types.json#/parameters/ApiVersionParameter in compute-diskrp-2026-03-02.json") == true)
    }

    // MARK: Official examples

    /// Examples without an `operationId` key: the operation SOURCES.txt (or the file name) gives them.
    static let exampleOperations = [
        "Gallery_Create.json": "Galleries_CreateOrUpdate",
        "GalleryImage_Create.json": "GalleryImages_CreateOrUpdate",
        "GalleryImageVersion_Create.json": "GalleryImageVersions_CreateOrUpdate",
        "GalleryImageVersion_Create_WithVHD.json": "GalleryImageVersions_CreateOrUpdate",
        "GalleryImageVersion_Get_WithReplicationStatus.json": "GalleryImageVersions_Get",
        "Labs_Get.json": "Labs_Get",
    ]

    /// Examples kept for their response shapes whose operation no extract has.
    static let examplesOutsideTheExtracts = [
        // Service Fabric managed clusters' async-operation status (api-version 2024-04-01), kept as the generic
        // ARM failed-operation body; its path is not an operation of any family here.
        "Long_running_operation_status_failed.json",
    ]

    static let exampleFiles: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: examplesDirectory.path)) ?? []
        return names.filter { $0.hasSuffix(".json") }.sorted()
    }()

    @Test func everyExampleIsCheckedOrExplained() throws {
        #expect(Self.exampleFiles.count >= 12)
        for file in Self.exampleFiles {
            let example = try Self.load(file)
            let named = example["operationId"] as? String ?? Self.exampleOperations[file]
            #expect(named != nil || Self.examplesOutsideTheExtracts.contains(file), "\(file): say which operation it shows")
        }
        // The excluded one really is outside the catalog (else it should be checked): its Service Fabric path.
        let status = request("GET", "/subscriptions/0/providers/Microsoft.ServiceFabric/locations/eastus/managedClusterOperations/1?api-version=2024-04-01")
        #expect(try catalog.operationId(status) == nil)
    }

    @Test(arguments: exampleFiles.filter { !examplesOutsideTheExtracts.contains($0) })
    func officialExampleHasNoProblems(_ file: String) throws {
        let catalog = try catalog
        let example = try Self.load(file)
        var parameters = try #require(example["parameters"] as? [String: Any])
        let operationId = try #require(example["operationId"] as? String ?? Self.exampleOperations[file])
        // Quirk: the GalleryRP examples name the api-version parameter `version`.
        if parameters["api-version"] == nil, let version = parameters.removeValue(forKey: "version") {
            parameters["api-version"] = version
        }
        let exampleVersion = try #require(parameters["api-version"] as? String)
        // The family is the one whose stable versions include the example's (DevTest Labs and Compute both have a
        // VirtualMachines_Get).
        let op = try #require(catalog.operations(named: operationId).first { $0.stableVersions.contains(exampleVersion) })
        // Quirk: the GalleryRP examples come from older api-version folders (2025-03-03; one file even says
        // 2024-03-03) than the extract (2026-03-03). Both are stable versions of the family (checked just above)
        // and these operations kept their shape, so the example is sent with the extract's version.
        parameters["api-version"] = op.apiVersion

        var path = op.pathTemplate
        let segmentCharacters = CharacterSet.urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))
        for (name, value) in parameters where path.contains("{\(name)}") {
            let encoded = try #require("\(value)".addingPercentEncoding(withAllowedCharacters: segmentCharacters))
            path = path.replacingOccurrences(of: "{\(name)}", with: encoded)
        }
        #expect(!path.contains("{"), "\(file): a path parameter has no value: \(path)")
        var components = try #require(URLComponents(string: "https://management.azure.com"))
        components.percentEncodedPath = path
        components.queryItems = [URLQueryItem(name: "api-version", value: op.apiVersion)]
            + op.queryParameters.compactMap { name in parameters[name].map { URLQueryItem(name: name, value: "\($0)") } }
        let body = try op.bodyParameter.flatMap { parameters[$0] }.map { try JSONSerialization.data(withJSONObject: $0) }
        #expect((body == nil) == (op.bodyParameter == nil), "\(file): the example must carry the body parameter")
        let request = RecordedRequest(method: op.method, url: try #require(components.url), body: body)

        #expect(catalog.problems(request) == [], "\(file)")
        #expect(catalog.operationId(request) == operationId)
        #expect(catalog.operation(for: request)?.family == op.family)
    }

    // MARK: Mistakes are reported

    static let subscription = "/subscriptions/00000000-0000-0000-0000-000000000000"
    static let gallery = subscription + "/resourceGroups/rg-images/providers/Microsoft.Compute/galleries/factoryGallery"
    static let galleryVersion = "api-version=2026-03-03"

    func request(_ method: String, _ pathAndQuery: String, body: String? = nil, host: String = "https://management.azure.com") -> RecordedRequest {
        RecordedRequest(method: method, url: URL(string: host + pathAndQuery)!, body: body.map { Data($0.utf8) })
    }

    /// The problems of a PUT of `body` to the gallery image `ubuntu` of the test gallery.
    func imageProblems(_ body: String) throws -> [String] {
        try catalog.problems(request("PUT", "\(Self.gallery)/images/ubuntu?\(Self.galleryVersion)", body: body))
    }

    @Test func validRequestsFromAnyHostHaveNoProblems() throws {
        let catalog = try catalog
        let body = #"{"location":"westeurope","tags":{"team":"images"},"properties":{"description":"Factory images"}}"#
        for host in ["https://management.azure.com", "https://127.0.0.1:8443"] {
            let put = request("PUT", "\(Self.gallery)?\(Self.galleryVersion)", body: body, host: host)
            #expect(catalog.problems(put) == [])
            #expect(catalog.operationId(put) == "Galleries_CreateOrUpdate")
        }
        // Literal segments compare case-insensitively (ARM does).
        let lowercased = request("GET", Self.gallery.lowercased() + "?\(Self.galleryVersion)")
        #expect(catalog.problems(lowercased) == [])
        // x-ms-enum modelAsString: true (hyperVGeneration) is extensible: any string, in any case, is accepted.
        for generation in ["V2", "v2", "V3"] {
            #expect(try imageProblems(#"{"location":"westeurope","properties":{"osType":"Linux","osState":"Generalized","hyperVGeneration":"\#(generation)","identifier":{"publisher":"p","offer":"o","sku":"s"}}}"#) == [])
        }
    }

    @Test func wrongApiVersionIsReported() throws {
        let problems = try catalog.problems(request("GET", "\(Self.gallery)?api-version=2025-03-03"))
        #expect(problems.count == 1)
        #expect(problems.first?.contains("api-version is 2025-03-03 but the spec is version 2026-03-03") == true)
        #expect(problems.first?.contains("Galleries_Get (GET /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/galleries/{galleryName} in compute-galleryrp-2026-03-03.json)") == true)
        #expect(problems.first?.contains("older stable version") == true)
        let missing = try catalog.problems(request("GET", Self.gallery))
        #expect(missing.first?.hasSuffix("the required query parameter api-version is missing (the spec is version 2026-03-03).") == true)
        let twice = try catalog.problems(request("GET", "\(Self.gallery)?\(Self.galleryVersion)&\(Self.galleryVersion)"))
        #expect(twice.first?.hasSuffix("api-version is sent 2 times (2026-03-03, 2026-03-03); send it once, as 2026-03-03.") == true)
        let unknown = try catalog.problems(request("GET", "\(Self.gallery)?api-version=2019-01-01"))
        #expect(unknown.first?.contains("2019-01-01 is not a stable version of compute-galleries: 2026-03-03, 2025-12-03,") == true)
    }

    @Test func unknownPathIsReported() throws {
        let typo = request("GET", Self.subscription + "/resourceGroups/rg-images/providers/Microsoft.Compute/galeries/factoryGallery?\(Self.galleryVersion)")
        let problems = try catalog.problems(typo)
        #expect(problems.count == 1)
        #expect(problems.first?.contains("matches no operation path of the specs (closest: GET /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/galleries/{galleryName}") == true)
        #expect(try catalog.operationId(typo) == nil)
        // `{param}` is one non-empty segment.
        #expect(try catalog.problems(request("GET", Self.subscription + "/resourceGroups//providers/Microsoft.Compute/galleries/g?\(Self.galleryVersion)")).count == 1)
    }

    @Test func wrongMethodIsReported() throws {
        let problems = try catalog.problems(request("PATCH", "\(Self.gallery)?\(Self.galleryVersion)", body: "{}"))
        #expect(problems == ["PATCH \(Self.gallery)?\(Self.galleryVersion) uses method PATCH, but /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/galleries/{galleryName} in compute-galleryrp-2026-03-03.json defines only DELETE, GET, PUT."])
    }

    @Test func missingRequiredPropertyIsReported() throws {
        // `location` comes from TrackedResource through allOf; `identifier`'s fields from its own required list.
        let problems = try catalog.problems(request("PUT", "\(Self.gallery)?\(Self.galleryVersion)", body: #"{"properties":{}}"#))
        #expect(problems.count == 1)
        #expect(problems.first?.hasSuffix("body is missing the required property 'location' (compute-galleryrp-2026-03-03.json#/definitions/Gallery).") == true)
        let image = try imageProblems(#"{"location":"westeurope","properties":{"osType":"Linux","osState":"Generalized","identifier":{"publisher":"p","offer":"o"}}}"#)
        #expect(image.count == 1)
        #expect(image.first?.contains("body.properties.identifier is missing the required property 'sku'") == true)
        // A required body that is not sent at all.
        #expect(try catalog.problems(request("PUT", "\(Self.gallery)?\(Self.galleryVersion)")).first?.contains("the body is missing") == true)
    }

    @Test func unknownPropertyIsReported() throws {
        let problems = try catalog.problems(request("PUT", "\(Self.gallery)?\(Self.galleryVersion)",
            body: #"{"location":"westeurope","properties":{"descripton":"typo","Identifier":{}}}"#))
        #expect(problems.count == 2)
        #expect(problems.contains { $0.contains("body.properties.descripton is not a property of compute-galleryrp-2026-03-03.json#/definitions/GalleryProperties; known: description, identifier,") })
        #expect(problems.contains { $0.contains("body.properties.Identifier is not a property of compute-galleryrp-2026-03-03.json#/definitions/GalleryProperties (did you mean 'identifier'?)") })
        // Properties a base contributes through allOf are known (TrackedResource's tags, GalleryArtifactVersionSource's id).
        let version = request("PUT", "\(Self.gallery)/images/ubuntu/versions/1.0.0?\(Self.galleryVersion)",
            body: #"{"location":"westeurope","tags":{},"properties":{"storageProfile":{"osDiskImage":{"source":{"id":"/x","uri":"https://a/b.vhd"},"hostCaching":"ReadOnly"}},"extra":1}}"#)
        let versionProblems = try catalog.problems(version)
        #expect(versionProblems.count == 1)
        #expect(versionProblems.first?.contains("body.properties.extra is not a property of compute-galleryrp-2026-03-03.json#/definitions/GalleryImageVersionProperties") == true)
    }

    @Test func readOnlyPropertyIsReported() throws {
        let problems = try catalog.problems(request("PUT", "\(Self.gallery)?\(Self.galleryVersion)",
            body: #"{"id":"/x","location":"westeurope","properties":{"provisioningState":"Succeeded"}}"#))
        #expect(problems.count == 2)
        #expect(problems.contains { $0.hasSuffix("body.id is read-only (common-types-resource-management-v3.json#/definitions/Resource/properties/id) and must not be sent.") })
        #expect(problems.contains { $0.contains("body.properties.provisioningState is read-only") })
    }

    @Test func badEnumValueIsReported() throws {
        let problems = try imageProblems(#"{"location":"westeurope","properties":{"osType":"linux","osState":"Generalised","identifier":{"publisher":"p","offer":"o","sku":"s"}}}"#)
        #expect(problems.count == 2)
        #expect(problems.contains { $0.hasSuffix("body.properties.osState is 'Generalised', not one of 'Generalized', 'Specialized' (compute-galleryrp-2026-03-03.json#/definitions/Common.OperatingSystemStateTypes).") })
        #expect(problems.contains { $0.contains("body.properties.osType is 'linux', not one of 'Windows', 'Linux'") && $0.contains("differs only in case from 'Linux'") })
        // A closed enum on a query parameter.
        let vm = Self.subscription + "/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1?api-version=2026-04-01"
        #expect(try catalog.problems(request("GET", vm + "&$expand=instanceView")) == [])
        #expect(try catalog.problems(request("GET", vm + "&$expand=everything")).first?.contains("query parameter $expand is 'everything', not one of") == true)
    }

    @Test func typesFormatsAndPatternsAreChecked() throws {
        let catalog = try catalog
        let disk = Self.subscription + "/resourceGroups/rg/providers/Microsoft.Compute/disks/os1/beginGetAccess?api-version=2026-03-02"
        #expect(catalog.problems(request("POST", disk, body: #"{"access":"Read","durationInSeconds":3600}"#)) == [])
        let wrong = catalog.problems(request("POST", disk, body: #"{"access":"Read","durationInSeconds":"3600","getSecureVMGuestStateSAS":1}"#))
        #expect(wrong.count == 2)
        #expect(wrong.contains { $0.contains("body.durationInSeconds is '3600' but compute-diskrp-2026-03-02.json#/definitions/GrantAccessData/properties/durationInSeconds declares type integer (int32).") })
        #expect(wrong.contains { $0.contains("body.getSecureVMGuestStateSAS is 1 but") })
        #expect(catalog.problems(request("POST", disk, body: #"{"access":"Read","durationInSeconds":3000000000}"#)).first?.contains("does not fit int32") == true)
        // additionalProperties schemas check map values.
        #expect(catalog.problems(request("PUT", "\(Self.gallery)?\(Self.galleryVersion)", body: #"{"location":"w","tags":{"n":5}}"#)).first?.contains("body.tags.n is 5") == true)
        // Path parameter patterns.
        let badName = catalog.problems(request("GET", Self.subscription + "/resourceGroups/rg/providers/Microsoft.Compute/galleries/_gallery-?\(Self.galleryVersion)"))
        #expect(badName.count == 1)
        #expect(badName.first?.contains("path parameter 'galleryName' '_gallery-' does not match the pattern") == true)
        let store = catalog.problems(request("GET", Self.subscription + "/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/Factory_Store?api-version=2026-09-01"))
        #expect(store.count == 1)
        #expect(store.first?.hasSuffix("path parameter 'accountName' 'Factory_Store' does not match the pattern ^[a-z0-9]+$ (storage-2026-09-01.json parameter 'accountName').") == true)
    }

    @Test func queryParametersAreChecked() throws {
        let catalog = try catalog
        let labs = Self.subscription + "/providers/Microsoft.DevTestLab/labs?api-version=2018-09-15"
        #expect(catalog.problems(request("GET", labs + "&$top=10&$filter=name%20eq%20'x'")) == [])
        #expect(catalog.problems(request("GET", labs + "&$top=ten")).first?.contains("query parameter $top is 'ten' but") == true)
        #expect(catalog.problems(request("GET", labs + "&$skip=1")).first?.contains("query parameter $skip is not declared by the operation (declared: api-version, $expand, $filter, $top, $orderby).") == true)
    }

    @Test func nextLinksAreMatchedByPathOnly() throws {
        let next = request("GET", Self.subscription + "/providers/Microsoft.Compute/galleries?api-version=2024-03-03&$skipToken=abc")
        #expect(try catalog.problems(next) == [])
        #expect(try catalog.operationId(next) == "Galleries_List")
    }

    @Test func bodiesOnlyWhereTheOperationTakesOne() throws {
        let start = Self.subscription + "/resourceGroups/rg/providers/Microsoft.DevTestLab/labs/lab1/virtualmachines/vm1/start?api-version=2018-09-15"
        #expect(try catalog.problems(request("POST", start)) == [])
        #expect(try catalog.problems(request("POST", start, body: "{}")) == [])
        #expect(try catalog.problems(request("POST", start, body: #"{"force":true}"#)).first?.hasSuffix("the request has a body but the operation takes none.") == true)
        #expect(try catalog.problems(request("PUT", "\(Self.gallery)?\(Self.galleryVersion)", body: "{")).first?.contains("not valid JSON") == true)
    }

    @Test func skipUrlEncodingParametersSpanSegments() throws {
        let catalog = try catalog
        let rg = Self.subscription + "/resourcegroups/rg/providers/"
        let suffix = "/providers/Microsoft.Authorization/permissions?api-version=2022-04-01"
        // parentResourcePath is empty for a top-level resource and "parent/name" for a child one.
        for resource in ["Microsoft.Storage//storageAccounts/store1", "Microsoft.Web/sites/site1/slots/staging"] {
            let permissions = request("GET", rg + resource + suffix)
            #expect(catalog.problems(permissions) == [], "\(resource)")
            #expect(catalog.operationId(permissions) == "Permissions_ListForResource")
        }
        #expect(catalog.operationId(request("GET", Self.subscription + "/resourcegroups/rg" + suffix)) == "Permissions_ListForResourceGroup")
    }

    /// No extract uses x-ms-paths, additionalProperties: false or a required read-only property, so a two-operation
    /// spec written here checks them.
    @Test func xMsPathsAreToldApartByTheirFixedQuery() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("RestSpecCatalogTests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let spec = #"""
            {"swagger": "2.0", "info": {"version": "2030-01-01"},
             "paths": {"/things/{name}": {"post": {"operationId": "Things_Touch", "parameters": [
                {"name": "api-version", "in": "query", "required": true, "type": "string"},
                {"name": "name", "in": "path", "required": true, "type": "string"}]}}},
             "x-ms-paths": {"/things/{name}?action=reset": {"post": {"operationId": "Things_Reset", "parameters": [
                {"name": "api-version", "in": "query", "required": true, "type": "string"},
                {"name": "name", "in": "path", "required": true, "type": "string"},
                {"name": "options", "in": "body", "required": true, "schema": {"$ref": "#/definitions/Options"}}]}}},
             "definitions": {"Options": {"type": "object", "additionalProperties": false, "required": ["id"],
                "properties": {"hard": {"type": "boolean"}, "id": {"type": "string", "readOnly": true}}}}}
            """#
        try Data(spec.utf8).write(to: folder.appendingPathComponent("things.json"))
        try Data(#"{"families": {"things": {"specFile": "things.json"}}}"#.utf8).write(to: folder.appendingPathComponent("versions.json"))
        let things = try RestSpecCatalog(directory: folder)
        let reset = request("POST", "/things/a?api-version=2030-01-01&action=reset", body: #"{"hard":true}"#)
        #expect(things.operationId(reset) == "Things_Reset")
        #expect(things.problems(reset) == [])
        #expect(things.problems(request("POST", "/things/a?api-version=2030-01-01&action=reset", body: #"{"soft":true}"#)).first?
            .hasSuffix("body.soft is not a property of things.json#/definitions/Options; known: hard, id.") == true)
        let touch = request("POST", "/things/a?api-version=2030-01-01")
        #expect(things.operationId(touch) == "Things_Touch")
        #expect(things.problems(touch) == [])
    }

    static func load(_ file: String) throws -> [String: Any] {
        let data = try Data(contentsOf: examplesDirectory.appendingPathComponent(file))
        return try #require(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }
}
