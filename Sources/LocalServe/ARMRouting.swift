import FactoryModel
import Foundation
import LocalCloud

/// Matches request paths against ARM path templates: literal segments compare ignoring case (ARM
/// does), `{name}` segments capture.
struct PathPattern {
    let parts: [String]
    init(_ pattern: String) { parts = pattern.split(separator: "/").map(String.init) }

    func match(_ segments: [String]) -> [String: String]? {
        guard segments.count == parts.count else { return nil }
        var captures: [String: String] = [:]
        for (part, segment) in zip(parts, segments) {
            if part.hasPrefix("{") { captures[String(part.dropFirst().dropLast())] = segment }
            else if part.lowercased() != segment.lowercased() { return nil }
        }
        return captures
    }
}

/// One long-running operation as its status URLs carry it: the local cloud's operation id and the
/// request whose answer is the operation's result (for PUT, the resource's GET). Keeping both in
/// the URL makes the URLs work across restarts of `local serve`, with nothing kept in memory.
struct OperationToken {
    var id: String
    var finalTarget: String?

    var encoded: String {
        guard let finalTarget else { return id }
        return id + "." + JWT.base64url(Data(finalTarget.utf8))
    }

    init(id: String, finalTarget: String?) {
        self.id = id
        self.finalTarget = finalTarget
    }

    init(_ text: String) {
        let parts = text.split(separator: ".", maxSplits: 1)
        id = parts.first.map(String.init) ?? text
        finalTarget = parts.count > 1 ? JWT.decodeBase64url(parts[1]).map { String(decoding: $0, as: UTF8.self) } : nil
    }
}

extension LocalServeService {
    /// ARM requests: api-version check, the subscription's write throttle, then the resource handlers.
    func arm(_ request: ServeRequest) async -> ServeResponse {
        guard let apiVersion = request.query("api-version"), !apiVersion.isEmpty else {
            return .armError(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
        }
        guard apiVersion.range(of: #"^\d{4}-\d{2}-\d{2}(-[A-Za-z]+)?$"#, options: .regularExpression) != nil else {
            return .armError(400, "InvalidApiVersionParameter", "The api-version '\(apiVersion)' is invalid. The supported versions are dates such as '2018-09-15'.")
        }
        var remaining: Int?
        if request.segments.first?.lowercased() == "subscriptions", request.segments.count > 1 {
            switch await takeWriteToken(request, subscription: request.segments[1]) {
            case .failure(let error):
                var response = ServeResponse.armError(error)
                response.setHeader("x-ms-ratelimit-remaining-subscription-writes", "0")
                return response
            case .success(let left):
                if left >= 0 && left != Int.max { remaining = left }
            }
        }
        var response: ServeResponse
        do {
            response = try await armRoute(request)
        } catch let error as CloudError {
            response = .armError(error.status < 400 ? CloudError(status: 500, code: error.code, message: error.message) : error)
        } catch {
            response = .armError(500, "InternalServerError", "The local cloud failed: \(error)")
        }
        if let remaining { response.setHeader("x-ms-ratelimit-remaining-subscription-writes", String(remaining)) }
        return response
    }

    func armRoute(_ request: ServeRequest) async throws -> ServeResponse {
        let s = request.segments
        func m(_ pattern: String) -> [String: String]? { PathPattern(pattern).match(s) }
        let sub = "subscriptions/{sub}"
        let rg = "\(sub)/resourceGroups/{rg}"
        let dtl = "\(rg)/providers/Microsoft.DevTestLab/labs/{lab}"

        // Long-running operation status (any provider).
        if let p = m("\(sub)/providers/{provider}/locations/{location}/operationResults/{op}") {
            return try await operationResult(request, p)
        }
        if let p = m("\(sub)/providers/{provider}/locations/{location}/operations/{op}") {
            return try await operationStatus(request, p)
        }
        if let p = m("\(rg)/providers/Microsoft.Resources/deployments/{name}/operationStatuses/{op}") {
            return try await operationStatus(request, ["provider": "Microsoft.Resources", "op": p["op"]!, "location": ""])
        }

        // DevTest Labs
        if let p = m("\(sub)/providers/Microsoft.DevTestLab/labs") { return try await listLabs(request, sub: p["sub"]!, rg: nil) }
        if let p = m("\(rg)/providers/Microsoft.DevTestLab/labs") { return try await listLabs(request, sub: p["sub"]!, rg: p["rg"]!) }
        if let p = m(dtl) { return try await lab(request, labID(p)) }
        if let p = m("\(dtl)/virtualmachines") { return try await listLabVMs(request, labID(p)) }
        if let p = m("\(dtl)/virtualmachines/{name}") { return try await labVM(request, VirtualMachineID(lab: labID(p), name: p["name"]!)) }
        if let p = m("\(dtl)/virtualmachines/{name}/{action}") {
            return try await labVMAction(request, VirtualMachineID(lab: labID(p), name: p["name"]!), action: p["action"]!)
        }
        if let p = m("\(dtl)/customimages") { return try await listCustomImages(request, labID(p)) }
        if let p = m("\(dtl)/customimages/{name}") { return try await customImage(request, CustomImageID(lab: labID(p), name: p["name"]!)) }
        if let p = m("\(dtl)/artifactsources") { return try await listArtifactSources(request, labID(p)) }
        if let p = m("\(dtl)/artifactsources/{name}") { return try await artifactSource(request, labID(p), name: p["name"]!) }

        // Resource-group deployments
        if let p = m("\(rg)/providers/Microsoft.Resources/deployments") { return try await listDeployments(request, sub: p["sub"]!, rg: p["rg"]!) }
        if let p = m("\(rg)/providers/Microsoft.Resources/deployments/{name}") { return try await deployment(request, sub: p["sub"]!, rg: p["rg"]!, name: p["name"]!) }

        // What the caller may do (imagefactory doctor)
        if m("\(rg)/providers/Microsoft.Authorization/permissions") != nil { return permissions(request) }
        if m("\(rg)/providers/{ns}/{type}/{name}/providers/Microsoft.Authorization/permissions") != nil { return permissions(request) }

        // Storage accounts (management plane)
        if let p = m("\(sub)/providers/Microsoft.Storage/storageAccounts") { return try await listStorageAccounts(request, sub: p["sub"]!, rg: nil) }
        if let p = m("\(rg)/providers/Microsoft.Storage/storageAccounts") { return try await listStorageAccounts(request, sub: p["sub"]!, rg: p["rg"]!) }
        if let p = m("\(rg)/providers/Microsoft.Storage/storageAccounts/{name}") { return try await storageAccount(request, p, action: nil) }
        if let p = m("\(rg)/providers/Microsoft.Storage/storageAccounts/{name}/{action}") { return try await storageAccount(request, p, action: p["action"]) }

        // Compute galleries
        let gallery = "\(rg)/providers/Microsoft.Compute/galleries/{gallery}"
        if let p = m("\(sub)/providers/Microsoft.Compute/galleries") { return try await listGalleries(request, sub: p["sub"]!, rg: nil) }
        if let p = m("\(rg)/providers/Microsoft.Compute/galleries") { return try await listGalleries(request, sub: p["sub"]!, rg: p["rg"]!) }
        if let p = m(gallery) { return try await galleryResource(request, galleryID(p)) }
        if let p = m("\(gallery)/images") { return try await listImageDefinitions(request, galleryID(p)) }
        if let p = m("\(gallery)/images/{image}") {
            return try await imageDefinition(request, GalleryImageDefinitionID(gallery: galleryID(p), name: p["image"]!))
        }
        if let p = m("\(gallery)/images/{image}/versions") {
            return try await listImageVersions(request, GalleryImageDefinitionID(gallery: galleryID(p), name: p["image"]!))
        }
        if let p = m("\(gallery)/images/{image}/versions/{version}") {
            let definition = GalleryImageDefinitionID(gallery: galleryID(p), name: p["image"]!)
            return try await imageVersion(request, GalleryImageVersionID(definition: definition, version: p["version"]!))
        }

        // Compute VMs and disks behind lab VMs
        if let p = m("\(sub)/providers/Microsoft.Compute/virtualMachines") { return try await listComputeVMs(request, sub: p["sub"]!, rg: nil) }
        if let p = m("\(rg)/providers/Microsoft.Compute/virtualMachines") { return try await listComputeVMs(request, sub: p["sub"]!, rg: p["rg"]!) }
        if let p = m("\(rg)/providers/Microsoft.Compute/virtualMachines/{name}") { return try await computeVM(request, p) }
        if let p = m("\(rg)/providers/Microsoft.Compute/virtualMachines/{name}/{action}") { return try await computeVM(request, p, action: p["action"]) }
        if let p = m("\(sub)/providers/Microsoft.Compute/disks") { return try await listDisks(request, sub: p["sub"]!, rg: nil) }
        if let p = m("\(rg)/providers/Microsoft.Compute/disks") { return try await listDisks(request, sub: p["sub"]!, rg: p["rg"]!) }
        if let p = m("\(rg)/providers/Microsoft.Compute/disks/{name}") { return try await disk(request, p, action: nil) }
        if let p = m("\(rg)/providers/Microsoft.Compute/disks/{name}/{action}") { return try await disk(request, p, action: p["action"]) }

        return .armError(404, "NotFound", "The local cloud has no ARM resource type at '\(request.rawPath)'. It serves DevTest Labs (labs, virtualmachines, customimages, artifactsources), Microsoft.Resources/deployments, Microsoft.Storage/storageAccounts and Microsoft.Compute (galleries, virtualMachines, disks).")
    }

    func labID(_ p: [String: String]) -> LabID { LabID(subscriptionId: p["sub"]!, resourceGroup: p["rg"]!, name: p["lab"]!) }
    func galleryID(_ p: [String: String]) -> GalleryID { GalleryID(subscriptionId: p["sub"]!, resourceGroup: p["rg"]!, name: p["gallery"]!) }

    static func methodNotAllowed(_ request: ServeRequest, _ allowed: String) -> ServeResponse {
        .armError(405, "MethodNotAllowed", "The local cloud does not support \(request.method) on '\(request.rawPath)'; it supports \(allowed).")
    }

    // MARK: Paging

    /// A list body, one page of it: `{"value": [...], "nextLink": "..."}` with `$skipToken` in the
    /// next link, which keeps every other query parameter of the first request.
    func page(_ request: ServeRequest, _ items: [JSONValue]) -> ServeResponse {
        var all = items
        if let top = request.query("$top").flatMap(Int.init), top >= 0 { all = Array(all.prefix(top)) }
        let start = min(all.count, max(0, request.query("$skipToken").flatMap(Int.init) ?? 0))
        let end = min(all.count, start + settings.pageSize)
        var body: [String: JSONValue] = ["value": .array(Array(all[start..<end]))]
        if end < all.count {
            let kept = request.queryItems.filter { $0.name.lowercased() != "$skiptoken" }
                .map { "\(Self.encodeQuery($0.name))=\(Self.encodeQuery($0.value))" }
            body["nextLink"] = .string("\(request.origin)\(request.rawPath)?\((kept + ["$skipToken=\(end)"]).joined(separator: "&"))")
        }
        return .json(200, .object(body))
    }

    static func encodeQuery(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~$")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }

    // MARK: Long-running operations

    enum StatusHeader { case location, asyncOperation, both }

    /// The answer to a request that started a long-running operation: `status` (201 or 202), the
    /// status URL headers and `Retry-After` in whole seconds.
    func started(_ request: ServeRequest, _ handle: OperationHandle, status: Int, body: JSONValue?, provider: String,
                 location: String, finalTarget: String?, headers kind: StatusHeader) -> ServeResponse {
        guard let id = handle.id else {
            // Completed at once: a synchronous answer, with no operation to poll.
            if let body { return .json(status, body) }
            return ServeResponse(status: status)
        }
        let sub = request.segments.count > 1 ? request.segments[1] : "00000000-0000-0000-0000-000000000000"
        let apiVersion = request.query("api-version") ?? ""
        let token = OperationToken(id: id, finalTarget: finalTarget).encoded
        let base = "\(request.origin)/subscriptions/\(sub)/providers/\(provider)/locations/\(location.isEmpty ? "local" : location)"
        var headers: [(name: String, value: String)] = [("Retry-After", String(RetryAfter.seconds(handle.retryAfter)))]
        if kind != .asyncOperation { headers.append(("Location", "\(base)/operationResults/\(token)?api-version=\(apiVersion)")) }
        if kind != .location { headers.append(("Azure-AsyncOperation", "\(base)/operations/\(token)?api-version=\(apiVersion)")) }
        if let body { return .json(status, body, headers: headers) }
        return ServeResponse(status: status, headers: headers)
    }

    /// The target of a resource's GET, for an operation's final answer.
    static func selfTarget(_ request: ServeRequest) -> String {
        "\(request.rawPath)?api-version=\(request.query("api-version") ?? "")"
    }

    /// `.../operationResults/{op}` (the Location URL): 202 while running; when done, what the request
    /// would have answered synchronously (the resource for a PUT, 204 for a DELETE or an action).
    func operationResult(_ request: ServeRequest, _ p: [String: String]) async throws -> ServeResponse {
        let token = OperationToken(p["op"]!)
        switch try await cloud.pollOperation(OperationHandle(id: token.id, retryAfter: 0)) {
        case .inProgress(let retryAfter):
            return ServeResponse(status: 202, headers: [("Location", "\(request.origin)\(request.rawPath)?api-version=\(request.query("api-version") ?? "")"),
                                                         ("Retry-After", String(RetryAfter.seconds(retryAfter)))])
        case .failed(let error):
            return .armError(CloudError(status: Self.failureStatus(error), code: error.code, message: error.message))
        case .succeeded:
            guard let target = token.finalTarget else { return ServeResponse(status: 204) }
            let final = ServeRequest(method: "GET", target: target, headers: request.headers, body: Data(), scheme: request.scheme)
            return try await armRoute(final)
        }
    }

    /// `.../operations/{op}` (the Azure-AsyncOperation URL, and DevTest Labs' Operations_Get): always 200
    /// with the status in the body, as ARM's async-operation contract says.
    func operationStatus(_ request: ServeRequest, _ p: [String: String]) async throws -> ServeResponse {
        let token = OperationToken(p["op"]!)
        let dtl = p["provider"]!.lowercased() == "microsoft.devtestlab"
        let started = Date()
        switch try await cloud.pollOperation(OperationHandle(id: token.id, retryAfter: 0)) {
        case .inProgress(let retryAfter):
            var body: [String: JSONValue] = ["name": .string(token.id), "status": dtl ? "Running" : "InProgress",
                                             "startTime": .string(started.ISO8601Format())]
            if dtl { body["statusCode"] = "Accepted" }
            return .json(200, .object(body), headers: [("Retry-After", String(RetryAfter.seconds(retryAfter)))])
        case .failed(let error):
            var body: [String: JSONValue] = ["name": .string(token.id), "status": "Failed", "percentComplete": 100,
                                             "error": ["code": .string(error.code), "message": .string(error.message)]]
            if dtl { body["statusCode"] = .string(Self.failureStatus(error) >= 500 ? "InternalServerError" : "BadRequest") }
            return .json(200, .object(body))
        case .succeeded:
            var body: [String: JSONValue] = ["name": .string(token.id), "status": "Succeeded", "percentComplete": 100,
                                             "endTime": .string(Date().ISO8601Format())]
            if dtl { body["statusCode"] = "OK" }
            return .json(200, .object(body))
        }
    }

    /// The HTTP status a failed operation reports: the local cloud stores operation errors with
    /// status 200 (the poll itself worked); a failed create is the caller's problem unless the
    /// service says otherwise.
    static func failureStatus(_ error: CloudError) -> Int {
        if error.status >= 400 { return error.status }
        return error.code.lowercased().contains("internal") ? 500 : 400
    }
}
