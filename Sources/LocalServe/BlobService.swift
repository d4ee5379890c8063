import Crypto
import FactoryModel
import Foundation
import LocalCloud

/// The Blob service of one storage account, path-style (`/{account}/{container}/{blob}`), as Azurite
/// serves it: containers, Put Blob (block blobs), Get Blob (with ranges), Get Blob Properties,
/// List Blobs, Delete Blob, Copy Blob (asynchronous, `x-ms-copy-status` to poll) and Abort Copy,
/// Lease Blob, and Get User Delegation Key. Errors are the service's XML `<Error>` with `x-ms-error-code`.
/// The caller was authenticated before (bearer token, Shared Key or SAS); `now` is the emulated time.
struct BlobService {
    let cloud: LocalCloud
    let account: StorageAccountID
    let caller: StorageCaller
    let tokens: TokenAuthority
    let now: Date
    /// Most items per list page when the client asks for more (or says nothing): Azure's 5,000,
    /// or `local serve --page-size`, so clients' marker paging is exercised.
    var pageSize = 5000

    func respond(_ request: ServeRequest) async -> ServeResponse {
        var response: ServeResponse
        do {
            response = try await route(request)
        } catch let error as CloudError {
            response = Self.error(error.status, error.code, error.message)
        } catch {
            response = Self.error(500, "InternalError", "The local cloud failed: \(error)")
        }
        if let version = request.header("x-ms-version") { response.setHeader("x-ms-version", version) }
        return response
    }

    private func route(_ request: ServeRequest) async throws -> ServeResponse {
        let s = request.segments
        let restype = request.query("restype")?.lowercased()
        let comp = request.query("comp")?.lowercased()
        if s.count == 1 {
            if request.method == "GET", comp == "list" { return try await listContainers(request) }
            if request.method == "POST", restype == "service", comp == "userdelegationkey" { return userDelegationKey(request) }
            if request.method == "GET", restype == "account", comp == "properties" {
                return ServeResponse(status: 200, headers: [("x-ms-sku-name", "Standard_LRS"), ("x-ms-account-kind", "StorageV2"), ("x-ms-is-hns-enabled", "false")])
            }
            return Self.error(400, "UnsupportedQueryParameter", "The local cloud's Blob service supports ?comp=list on the account.")
        }
        let container = ContainerID(account: account, name: s[1])
        if s.count == 2 {
            guard restype == "container" else {
                return Self.error(400, "InvalidQueryParameterValue", "Container operations need ?restype=container.")
            }
            switch (request.method, comp) {
            case ("PUT", nil):
                try await cloud.createContainer(container)
                return ServeResponse(status: 201, headers: [("ETag", Self.etag(Date())), ("Last-Modified", HTTPDate.format(Date()))])
            case ("DELETE", nil):
                try await cloud.deleteContainer(container)
                return ServeResponse(status: 202)
            case ("GET", nil), ("HEAD", nil):
                guard try await cloud.listContainers(account: account).contains(container.name) else {
                    throw CloudError(status: 404, code: "ContainerNotFound", message: "The specified container does not exist.")
                }
                return ServeResponse(status: 200, headers: [("ETag", Self.etag(Date(timeIntervalSince1970: 0))), ("Last-Modified", HTTPDate.format(Date(timeIntervalSince1970: 0))),
                                                            ("x-ms-lease-status", "unlocked"), ("x-ms-lease-state", "available"),
                                                            ("x-ms-has-immutability-policy", "false"), ("x-ms-has-legal-hold", "false")])
            case ("GET", "list"):
                return try await listBlobs(request, container)
            default:
                return Self.error(400, "UnsupportedHttpVerb", "The local cloud does not support \(request.method) with comp=\(comp ?? "none") on a container.")
            }
        }
        let blob = BlobID(container: container, name: s.dropFirst(2).joined(separator: "/"))
        switch (request.method, comp) {
        case ("PUT", nil):
            if let source = request.header("x-ms-copy-source") { return try await startCopy(request, from: source, to: blob) }
            return try await putBlob(request, blob)
        case ("GET", nil):
            return try await getBlob(request, blob)
        case ("HEAD", nil):
            return try await blobProperties(blob)
        case ("DELETE", nil):
            try await cloud.deleteBlob(blob)
            return ServeResponse(status: 202, headers: [("x-ms-delete-type-permanent", "true")])
        case ("PUT", "copy"):
            guard request.header("x-ms-copy-action")?.lowercased() == "abort" else {
                return Self.error(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-copy-action.")
            }
            let properties = try await cloud.getBlobProperties(blob)
            if let wanted = request.query("copyid"), properties.copyStatus == .pending,
               wanted.lowercased() != Self.copyID(blob, properties).lowercased() {
                throw CloudError(status: 409, code: "CopyIdMismatch", message: "The specified copy ID did not match the copy ID for the pending copy operation.")
            }
            try await cloud.abortBlobCopy(blob)
            return ServeResponse(status: 204)
        case ("PUT", "lease"):
            return try await lease(request, blob)
        case ("PUT", "page"):
            return try await putPage(request, blob)
        case ("GET", "metadata"), ("HEAD", "metadata"):
            let properties = try await cloud.getBlobProperties(blob)
            return ServeResponse(status: 200, headers: Self.metadataHeaders(properties.metadata) + [("ETag", Self.etag(properties.lastModified))])
        default:
            return Self.error(400, "UnsupportedQueryParameter", "The local cloud's Blob service does not support \(request.method) with comp=\(comp ?? "none") on a blob (block lists, page ranges and tags are not emulated).")
        }
    }

    // MARK: Blobs

    private func putBlob(_ request: ServeRequest, _ blob: BlobID) async throws -> ServeResponse {
        let type = request.header("x-ms-blob-type") ?? ""
        if type.lowercased() == "pageblob" { return try await createPageBlob(request, blob) }
        guard type.lowercased() == "blockblob" else {
            if type.isEmpty {
                return Self.error(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-blob-type.")
            }
            return Self.error(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: x-ms-blob-type '\(type)' (the local cloud has block and page blobs, not append blobs).")
        }
        if let md5 = request.header("Content-MD5"), md5 != Data(Insecure.MD5.hash(data: request.body)).base64EncodedString() {
            return Self.error(400, "Md5Mismatch", "The MD5 value specified in the request did not match with the MD5 value calculated by the server.")
        }
        let properties = try await cloud.putBlob(blob, data: request.body, metadata: Self.metadata(request))
        var headers: [(name: String, value: String)] = [("ETag", Self.etag(properties.lastModified)), ("Last-Modified", HTTPDate.format(properties.lastModified)),
                                                        ("x-ms-request-server-encrypted", "true")]
        if let md5 = properties.contentMD5 { headers.append(("Content-MD5", md5)) }
        return ServeResponse(status: 201, headers: headers)
    }

    /// Put Blob of a page blob: an empty body, its size in `x-ms-blob-content-length` (whole
    /// 512-byte pages), its Content-MD5 only if the client sets `x-ms-blob-content-md5` (Azure
    /// computes none for a page blob). The pages are then written with Put Page.
    private func createPageBlob(_ request: ServeRequest, _ blob: BlobID) async throws -> ServeResponse {
        guard let sizeText = request.header("x-ms-blob-content-length") else {
            return Self.error(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-blob-content-length.")
        }
        guard let size = Int64(sizeText), size >= 0, size % Int64(PageBlobLayout.pageSize) == 0 else {
            return Self.error(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: x-ms-blob-content-length must be a multiple of 512.")
        }
        guard request.body.isEmpty else {
            return Self.error(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: Content-Length must be 0 to create a page blob.")
        }
        let properties = try await cloud.putPageBlob(blob, size: size, md5: request.header("x-ms-blob-content-md5"), metadata: Self.metadata(request)) { url in
            guard FileManager.default.createFile(atPath: url.path, contents: nil), let handle = try? FileHandle(forWritingTo: url) else {
                throw CloudError(status: 500, code: "InternalError", message: "Cannot create the page blob's file.")
            }
            defer { try? handle.close() }
            try handle.truncate(atOffset: UInt64(size))
        }
        return ServeResponse(status: 201, headers: [("ETag", Self.etag(properties.lastModified)), ("Last-Modified", HTTPDate.format(properties.lastModified)),
                                                    ("x-ms-request-server-encrypted", "true")])
    }

    /// Put Page: `x-ms-page-write: update` with the pages' bytes, or `clear` with no body, over a
    /// range of whole 512-byte pages (`x-ms-range` or `Range`), at most 4 MiB.
    private func putPage(_ request: ServeRequest, _ blob: BlobID) async throws -> ServeResponse {
        guard let write = request.header("x-ms-page-write")?.lowercased(), write == "update" || write == "clear" else {
            return Self.error(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-page-write (update or clear).")
        }
        guard let range = request.header("x-ms-range") ?? request.header("Range") else {
            return Self.error(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-range.")
        }
        let parts = range.lowercased().hasPrefix("bytes=") ? range.dropFirst(6).split(separator: "-", omittingEmptySubsequences: false) : []
        guard parts.count == 2, let start = Int64(parts[0]), let end = Int64(parts[1]), end >= start else {
            return Self.error(416, "InvalidPageRange", "The page range specified is invalid: '\(range)'.")
        }
        let length = end - start + 1
        if write == "update" {
            guard Int64(request.body.count) == length else {
                return Self.error(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: the body has \(request.body.count) bytes for a range of \(length).")
            }
            if let md5 = request.header("Content-MD5"), md5 != Data(Insecure.MD5.hash(data: request.body)).base64EncodedString() {
                return Self.error(400, "Md5Mismatch", "The MD5 value specified in the request did not match with the MD5 value calculated by the server.")
            }
        }
        try await cloud.putPages(blob, offset: start, data: request.body, clear: write == "clear", length: length)
        let properties = try await cloud.getBlobProperties(blob)
        return ServeResponse(status: 201, headers: [("ETag", Self.etag(properties.lastModified)), ("Last-Modified", HTTPDate.format(properties.lastModified)),
                                                    ("x-ms-blob-sequence-number", "0"), ("x-ms-request-server-encrypted", "true")])
    }

    private func getBlob(_ request: ServeRequest, _ blob: BlobID) async throws -> ServeResponse {
        let properties = try await cloud.getBlobProperties(blob)
        let details = try await cloud.blobServiceDetails(blob)
        let data = try await cloud.getBlob(blob)
        var headers = Self.propertyHeaders(blob, properties, details)
        headers.removeAll { $0.name == "Content-Length" }
        guard let range = request.header("x-ms-range") ?? request.header("Range") else {
            return ServeResponse(status: 200, headers: headers, body: data)
        }
        guard let (start, end) = Self.parseRange(range, size: data.count) else {
            return Self.error(416, "InvalidRange", "The range specified is invalid for the current size of the resource.")
        }
        headers.append(("Content-Range", "bytes \(start)-\(end)/\(data.count)"))
        if request.header("x-ms-range-get-content-md5")?.lowercased() == "true" {
            headers.removeAll { $0.name == "Content-MD5" }
            headers.append(("Content-MD5", Data(Insecure.MD5.hash(data: data[start...end])).base64EncodedString()))
        }
        return ServeResponse(status: 206, headers: headers, body: data.subdata(in: start..<(end + 1)))
    }

    /// `bytes=START-END` or `bytes=START-` within a blob of `size` bytes.
    static func parseRange(_ text: String, size: Int) -> (Int, Int)? {
        guard text.lowercased().hasPrefix("bytes=") else { return nil }
        let parts = text.dropFirst(6).split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, let start = Int(parts[0]), start < size else { return nil }
        let end = parts[1].isEmpty ? size - 1 : min(size - 1, Int(parts[1]) ?? (size - 1))
        return end >= start ? (start, end) : nil
    }

    private func blobProperties(_ blob: BlobID) async throws -> ServeResponse {
        let properties = try await cloud.getBlobProperties(blob)
        let details = try await cloud.blobServiceDetails(blob)
        return ServeResponse(status: 200, headers: Self.propertyHeaders(blob, properties, details))
    }

    static func propertyHeaders(_ blob: BlobID, _ p: BlobProperties, _ d: BlobServiceDetails) -> [(name: String, value: String)] {
        var headers: [(name: String, value: String)] = [
            ("Content-Length", String(p.contentLength)), ("Content-Type", "application/octet-stream"),
            ("ETag", etag(p.lastModified)), ("Last-Modified", HTTPDate.format(p.lastModified)),
            ("x-ms-creation-time", HTTPDate.format(p.lastModified)), ("x-ms-blob-type", p.blobType.rawValue),
            ("x-ms-lease-status", d.leaseState == "leased" || d.leaseState == "breaking" ? "locked" : "unlocked"),
            ("x-ms-lease-state", d.leaseState), ("x-ms-server-encrypted", "true"), ("x-ms-access-tier", "Hot"),
            ("x-ms-access-tier-inferred", "true"), ("Accept-Ranges", "bytes"),
        ]
        if p.blobType == .pageBlob { headers.append(("x-ms-blob-sequence-number", "0")) }
        if let duration = d.leaseDuration { headers.append(("x-ms-lease-duration", duration)) }
        if let md5 = p.contentMD5 { headers.append(("Content-MD5", md5)) }
        if let status = p.copyStatus {
            headers.append(("x-ms-copy-id", copyID(blob, p)))
            headers.append(("x-ms-copy-status", status.rawValue))
            if let progress = p.copyProgress { headers.append(("x-ms-copy-progress", progress)) }
            if let source = d.copySource { headers.append(("x-ms-copy-source", source)) }
            if let description = p.copyStatusDescription { headers.append(("x-ms-copy-status-description", description)) }
            if status != .pending, let done = d.copyCompletesAt { headers.append(("x-ms-copy-completion-time", HTTPDate.format(done))) }
        }
        return headers + metadataHeaders(p.metadata)
    }

    static func metadataHeaders(_ metadata: [String: String]) -> [(name: String, value: String)] {
        metadata.sorted { $0.key < $1.key }.map { ("x-ms-meta-\($0.key)", $0.value) }
    }

    static func metadata(_ request: ServeRequest) -> [String: String] {
        var metadata: [String: String] = [:]
        for (name, value) in request.headers where name.lowercased().hasPrefix("x-ms-meta-") {
            metadata[String(name.dropFirst("x-ms-meta-".count))] = value
        }
        return metadata
    }

    /// A copy's id: stable for one copy (derived from the destination and the moment the copy began).
    static func copyID(_ blob: BlobID, _ p: BlobProperties) -> String {
        let digest = Array(SHA256.hash(data: Data("\(blob.description)|\(p.lastModified.timeIntervalSince1970)".utf8)))
        let hex = digest.prefix(16).map { String(format: "%02x", $0) }.joined()
        let c = Array(hex)
        return "\(String(c[0..<8]))-\(String(c[8..<12]))-\(String(c[12..<16]))-\(String(c[16..<20]))-\(String(c[20..<32]))"
    }

    static func etag(_ date: Date) -> String {
        "\"0x\(String(UInt64(date.timeIntervalSince1970 * 10_000_000), radix: 16, uppercase: true))\""
    }

    // MARK: Copy

    /// Copy Blob. A source in another storage account must carry a SAS that grants read on that blob
    /// (verified as a request to the source would be, at the copy's start), as Azure requires for a
    /// private source; a source in the same account needs none.
    private func startCopy(_ request: ServeRequest, from source: String, to destination: BlobID) async throws -> ServeResponse {
        if let disk = DiskAccessURL.parse(source) {
            // A managed disk's SAS (beginGetAccess), as the original factory exported disks.
            let properties = try await cloud.startBlobCopy(fromDiskAccess: disk.id, signature: disk.signature, sourceURL: source, to: destination)
            return ServeResponse(status: 202, headers: [("ETag", Self.etag(properties.lastModified)), ("Last-Modified", HTTPDate.format(properties.lastModified)),
                                                        ("x-ms-copy-id", Self.copyID(destination, properties)),
                                                        ("x-ms-copy-status", (properties.copyStatus ?? .pending).rawValue)])
        }
        let sourceID = try await BlobService.blobID(fromURI: source, cloud: cloud)
        if sourceID.container.account.name.lowercased() != account.name.lowercased() {
            if let refusal = sourceRefusal(source, sourceID) {
                return Self.error(403, "CannotVerifyCopySource", "This request is not authorized to perform this operation: the source blob is in another storage account and its URL's SAS does not grant read. \(refusal)")
            }
        }
        let properties = try await cloud.startBlobCopy(from: sourceID, to: destination)
        return ServeResponse(status: 202, headers: [("ETag", Self.etag(properties.lastModified)), ("Last-Modified", HTTPDate.format(properties.lastModified)),
                                                    ("x-ms-copy-id", Self.copyID(destination, properties)),
                                                    ("x-ms-copy-status", (properties.copyStatus ?? .pending).rawValue)])
    }

    /// Why the SAS of a copy source URL does not let this copy read the source, or nil when it does.
    private func sourceRefusal(_ source: String, _ sourceID: BlobID) -> String? {
        guard let url = URLComponents(string: source) else { return "The source URL is not a URL." }
        var query: [(name: String, value: String)] = []
        for pair in (url.percentEncodedQuery ?? "").split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            query.append((ServeRequest.decode(String(kv[0]), plusIsSpace: true), kv.count > 1 ? ServeRequest.decode(String(kv[1]), plusIsSpace: true) : ""))
        }
        guard query.contains(where: { $0.name.lowercased() == "sig" }) else { return "The source URL carries no SAS." }
        let target = StorageSignature.SASTarget(account: sourceID.container.account, container: sourceID.container.name, blob: sourceID.name,
                                                operation: SASOperation.read, scheme: url.scheme ?? "https")
        let tokens = self.tokens
        switch StorageSignature.verifySAS(query, target: target, now: now, bearerOID: nil, delegationKey: { tokens.userDelegationKey(oid: $0, tid: $1, start: $2, expiry: $3) }) {
        case .success: return nil
        case .failure(let failure): return "\(failure.code): \(failure.message)"
        }
    }

    // MARK: User delegation key

    /// Get User Delegation Key: a key to sign user delegation SAS with, for the bearer token's
    /// principal, valid from `Start` to `Expiry` (at most 7 days ahead). The value is derived from
    /// the principal and the window, so the SAS verifies later without the key being stored.
    private func userDelegationKey(_ request: ServeRequest) -> ServeResponse {
        guard case .bearer(let claims) = caller, let oid = claims["oid"]?.string, let tid = claims["tid"]?.string else {
            return Self.error(403, "AuthenticationFailed", "Server failed to authenticate the request. Get User Delegation Key is authorized with a Microsoft Entra bearer token only (not Shared Key or a SAS).")
        }
        let body = String(decoding: request.body, as: UTF8.self)
        guard let expiryText = XML.element("Expiry", in: body) else {
            return Self.error(400, "InvalidXmlDocument", "XML specified is not syntactically valid: the body must be <KeyInfo><Start>...</Start><Expiry>...</Expiry></KeyInfo>.")
        }
        let startText = XML.element("Start", in: body)
        guard let expiry = StorageSignature.parseSASTime(expiryText) else {
            return Self.error(400, "InvalidXmlNodeValue", "The value for one of the XML nodes is not in the correct format: Expiry '\(expiryText)' is not an ISO 8601 UTC time.")
        }
        let start: Date
        if let startText {
            guard let parsed = StorageSignature.parseSASTime(startText) else {
                return Self.error(400, "InvalidXmlNodeValue", "The value for one of the XML nodes is not in the correct format: Start '\(startText)' is not an ISO 8601 UTC time.")
            }
            start = parsed
        } else {
            start = now
        }
        // Whole seconds: the key is derived from them, and the SAS quotes them back.
        let keyStart = Date(timeIntervalSince1970: start.timeIntervalSince1970.rounded(.down))
        let keyExpiry = Date(timeIntervalSince1970: expiry.timeIntervalSince1970.rounded(.down))
        guard keyExpiry > keyStart, keyExpiry > now else {
            return Self.error(400, "InvalidXmlNodeValue", "The value for one of the XML nodes is not in the correct format: Expiry must be after Start and in the future.")
        }
        guard keyExpiry.timeIntervalSince(now) <= 7 * 86_400 else {
            return Self.error(400, "InvalidXmlNodeValue", "The value for one of the XML nodes is not in the correct format: Expiry '\(expiryText)' is more than 7 days from now, the longest a user delegation key lives.")
        }
        let version = request.header("x-ms-version") ?? "2025-11-05"
        let value = tokens.userDelegationKey(oid: oid, tid: tid, start: keyStart, expiry: keyExpiry).base64EncodedString()
        var xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><UserDelegationKey>"
        xml += "<SignedOid>\(XML.escape(oid))</SignedOid><SignedTid>\(XML.escape(tid))</SignedTid>"
        xml += "<SignedStart>\(StorageSignature.formatSASTime(keyStart))</SignedStart><SignedExpiry>\(StorageSignature.formatSASTime(keyExpiry))</SignedExpiry>"
        xml += "<SignedService>b</SignedService><SignedVersion>\(XML.escape(version))</SignedVersion><Value>\(value)</Value></UserDelegationKey>"
        return ServeResponse(status: 200, headers: [("Content-Type", "application/xml")], body: Data(xml.utf8))
    }

    /// A blob from a URI: `https://{account}.blob.core.windows.net/{container}/{blob}` or this server's
    /// path-style `http(s)://127.0.0.1:{port}/{account}/{container}/{blob}`.
    static func blobID(fromURI uri: String, cloud: LocalCloud) async throws -> BlobID {
        guard let url = URLComponents(string: uri), let host = url.host else {
            throw CloudError(status: 400, code: "InvalidSourceBlobUrl", message: "The source URL '\(uri)' is not a valid blob URL.")
        }
        var parts = url.percentEncodedPath.split(separator: "/", omittingEmptySubsequences: true).map { ServeRequest.decode(String($0)) }
        let accountName: String
        if host.lowercased().hasSuffix(".blob.core.windows.net") {
            accountName = String(host.split(separator: ".")[0])
        } else {
            guard !parts.isEmpty else { throw CloudError(status: 400, code: "InvalidSourceBlobUrl", message: "The blob URL '\(uri)' names no storage account.") }
            accountName = parts.removeFirst()
        }
        guard parts.count >= 2 else {
            throw CloudError(status: 400, code: "InvalidSourceBlobUrl", message: "The blob URL '\(uri)' names no container and blob.")
        }
        guard let account = try await cloud.storageAccount(named: accountName) else {
            throw CloudError(status: 404, code: "CannotVerifyCopySource", message: "The storage account '\(accountName)' of '\(uri)' does not exist in the local cloud.")
        }
        return BlobID(container: ContainerID(account: account, name: parts[0]), name: parts.dropFirst().joined(separator: "/"))
    }

    // MARK: Lease

    private func lease(_ request: ServeRequest, _ blob: BlobID) async throws -> ServeResponse {
        let action = request.header("x-ms-lease-action")?.lowercased() ?? ""
        let leaseID = request.header("x-ms-lease-id")
        let properties = try await cloud.getBlobProperties(blob)
        let common: [(name: String, value: String)] = [("ETag", Self.etag(properties.lastModified)), ("Last-Modified", HTTPDate.format(properties.lastModified))]
        switch action {
        case "acquire":
            guard let duration = request.header("x-ms-lease-duration").flatMap(Double.init) else {
                return Self.error(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-lease-duration.")
            }
            let proposed = request.header("x-ms-proposed-lease-id") ?? UUID().uuidString.lowercased()
            let id = try await cloud.acquireLease(blob, duration: duration, proposedLeaseID: proposed)
            return ServeResponse(status: 201, headers: common + [("x-ms-lease-id", id)])
        case "renew", "release":
            guard let leaseID else {
                return Self.error(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-lease-id.")
            }
            if action == "renew" { try await cloud.renewLease(blob, leaseID: leaseID) } else { try await cloud.releaseLease(blob, leaseID: leaseID) }
            return ServeResponse(status: 200, headers: common + (action == "renew" ? [("x-ms-lease-id", leaseID)] : []))
        case "change":
            guard let leaseID, let proposed = request.header("x-ms-proposed-lease-id") else {
                return Self.error(400, "MissingRequiredHeader", "Change Lease needs x-ms-lease-id and x-ms-proposed-lease-id.")
            }
            try await cloud.changeLease(blob, leaseID: leaseID, proposedLeaseID: proposed)
            return ServeResponse(status: 200, headers: common + [("x-ms-lease-id", proposed)])
        case "break":
            let seconds = try await cloud.breakLease(blob, period: request.header("x-ms-lease-break-period").flatMap(Double.init))
            return ServeResponse(status: 202, headers: common + [("x-ms-lease-time", String(seconds))])
        default:
            return Self.error(400, "InvalidHeaderValue", "x-ms-lease-action must be acquire, renew, change, release or break.")
        }
    }

    // MARK: Lists

    private func listContainers(_ request: ServeRequest) async throws -> ServeResponse {
        let prefix = request.query("prefix") ?? ""
        let names = try await cloud.listContainers(account: account).filter { $0.hasPrefix(prefix) }.sorted()
        let (page, next) = Self.page(names, request: request, pageSize: pageSize) { $0 }
        var xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"\(XML.escape(request.origin))/\(account.name)/\">"
        xml += "<Prefix>\(XML.escape(prefix))</Prefix><Containers>"
        for name in page {
            xml += "<Container><Name>\(XML.escape(name))</Name><Properties><Last-Modified>\(HTTPDate.format(Date(timeIntervalSince1970: 0)))</Last-Modified>"
            xml += "<Etag>\(XML.escape(Self.etag(Date(timeIntervalSince1970: 0))))</Etag><LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>"
            xml += "<HasImmutabilityPolicy>false</HasImmutabilityPolicy><HasLegalHold>false</HasLegalHold></Properties></Container>"
        }
        xml += "</Containers><NextMarker>\(XML.escape(next ?? ""))</NextMarker></EnumerationResults>"
        return ServeResponse(status: 200, headers: [("Content-Type", "application/xml")], body: Data(xml.utf8))
    }

    private func listBlobs(_ request: ServeRequest, _ container: ContainerID) async throws -> ServeResponse {
        let prefix = request.query("prefix")
        let include = (request.query("include") ?? "").lowercased().split(separator: ",")
        let blobs = try await cloud.listBlobs(container: container, prefix: prefix).sorted { $0.id.name < $1.id.name }
        let (page, next) = Self.page(blobs, request: request, pageSize: pageSize) { $0.id.name }
        var xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"\(XML.escape(request.origin))/\(account.name)/\" ContainerName=\"\(XML.escape(container.name))\">"
        if let prefix { xml += "<Prefix>\(XML.escape(prefix))</Prefix>" }
        if let max = request.query("maxresults") { xml += "<MaxResults>\(XML.escape(max))</MaxResults>" }
        xml += "<Blobs>"
        for p in page {
            xml += "<Blob><Name>\(XML.escape(p.id.name))</Name><Properties>"
            xml += "<Creation-Time>\(HTTPDate.format(p.lastModified))</Creation-Time><Last-Modified>\(HTTPDate.format(p.lastModified))</Last-Modified>"
            xml += "<Etag>\(XML.escape(Self.etag(p.lastModified)))</Etag><Content-Length>\(p.contentLength)</Content-Length>"
            xml += "<Content-Type>application/octet-stream</Content-Type>"
            if let md5 = p.contentMD5 { xml += "<Content-MD5>\(md5)</Content-MD5>" }
            xml += "<BlobType>\(p.blobType.rawValue)</BlobType><LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>"
            if let status = p.copyStatus, include.contains("copy") {
                xml += "<CopyId>\(Self.copyID(p.id, p))</CopyId><CopyStatus>\(status.rawValue)</CopyStatus>"
                if let progress = p.copyProgress { xml += "<CopyProgress>\(progress)</CopyProgress>" }
            }
            xml += "<ServerEncrypted>true</ServerEncrypted><AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred></Properties>"
            if include.contains("metadata") {
                xml += "<Metadata>" + p.metadata.sorted { $0.key < $1.key }.map { "<\($0.key)>\(XML.escape($0.value))</\($0.key)>" }.joined() + "</Metadata>"
            }
            xml += "</Blob>"
        }
        xml += "</Blobs><NextMarker>\(XML.escape(next ?? ""))</NextMarker></EnumerationResults>"
        return ServeResponse(status: 200, headers: [("Content-Type", "application/xml")], body: Data(xml.utf8))
    }

    /// `maxresults` / `marker` paging: the marker is the name the next page starts at.
    static func page<T>(_ items: [T], request: ServeRequest, pageSize: Int = 5000, name: (T) -> String) -> ([T], String?) {
        var rest = items
        if let marker = request.query("marker"), !marker.isEmpty { rest = rest.filter { name($0) >= marker } }
        let max = min(pageSize, 5000, request.query("maxresults").flatMap(Int.init) ?? 5000)
        guard rest.count > max, max > 0 else { return (rest, nil) }
        return (Array(rest.prefix(max)), name(rest[max]))
    }

    // MARK: Errors

    static func error(_ status: Int, _ code: String, _ message: String) -> ServeResponse {
        let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>\(XML.escape(code))</Code><Message>\(XML.escape(message))\nRequestId:\(UUID().uuidString.lowercased())\nTime:\(Date().ISO8601Format())</Message></Error>"
        return ServeResponse(status: status, headers: [("Content-Type", "application/xml"), ("x-ms-error-code", code)], body: Data(xml.utf8))
    }

    static func authenticationFailed(_ rejection: TokenAuthority.Rejection) -> ServeResponse {
        let code: String
        let detail: String
        switch rejection {
        case .missing: code = "NoAuthenticationInformation"; detail = "Server failed to authenticate the request. Please refer to the information in the www-authenticate header."
        case .expired, .revoked: code = "InvalidAuthenticationInfo"; detail = "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.\nAuthenticationErrorDetail:Lifetime validation failed. The token is expired."
        case .wrongAudience(let aud): code = "InvalidAuthenticationInfo"; detail = "Server failed to authenticate the request.\nAuthenticationErrorDetail:Audience validation failed. Audience did not match: '\(aud)'."
        case .malformed, .badSignature: code = "InvalidAuthenticationInfo"; detail = "Server failed to authenticate the request. The local cloud's Blob service takes bearer tokens from its token endpoint, Shared Key or a SAS."
        }
        var response = error(401, code, detail)
        response.setHeader("WWW-Authenticate", "Bearer authorization_uri=https://login.microsoftonline.com/common/oauth2/authorize resource_id=https://storage.azure.com")
        return response
    }
}

enum XML {
    /// The text of the first `<name>` element of a small document (the service's request bodies are flat).
    static func element(_ name: String, in xml: String) -> String? {
        guard let open = xml.range(of: "<\(name)>"), let close = xml.range(of: "</\(name)>", range: open.upperBound..<xml.endIndex) else { return nil }
        return xml[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
