// Checks recorded HTTP requests against the Azure REST API spec extracts in Specs/ (OpenAPI 2.0 with the
// x-ms-* conventions), so the Azure backend's tests fail when the client sends a path, method, api-version,
// query or body that Azure's published contract does not describe. Foundation only, test-target code.
import Foundation

/// One HTTP request as the client under test sent it. Only the URL's path and query matter (the host may be
/// management.azure.com or a loopback test server).
struct RecordedRequest: Sendable {
    var method: String
    var url: URL
    var body: Data?
}

/// The operations of every spec family listed in `versions.json`, each with that extract's api-version.
///
/// Why our own validator: the extracts are small, the rules we need (ARM path matching, `allOf`, `readOnly`,
/// `x-ms-enum`) are a narrow slice of OpenAPI 2.0, and the test target takes no extra dependencies.
struct RestSpecCatalog: Sendable {
    /// What tests need to build a request for an operation, e.g. from an official example's parameters.
    struct OperationSummary: Sendable {
        var operationId: String
        var method: String
        var pathTemplate: String
        var apiVersion: String
        var family: String
        var specFile: String
        /// The family's stable api-versions from versions.json, newest first.
        var stableVersions: [String]
        /// The name of the `in: body` parameter, if the operation takes a body.
        var bodyParameter: String?
        /// Declared query parameters other than api-version.
        var queryParameters: [String]
    }

    struct LoadError: Error, CustomStringConvertible {
        var description: String
    }

    private let documents: [String: JSON]
    /// versions.json's refMap, longest key first, so the most specific common-types path wins.
    private let refMap: [(suffix: String, file: String)]
    private let operations: [Operation]

    /// Loads versions.json, every family's `specFile` and the common-types files of its `refMap`. Throws when a
    /// file is missing, a `$ref` cannot be resolved or a `pattern` is not a valid regular expression, so a broken
    /// Specs folder fails loudly instead of making every request look wrong.
    init(directory: URL) throws {
        struct Versions: Decodable {
            struct Family: Decodable { var specFile: String; var stable: [String]? }
            var families: [String: Family]
            var refMap: [String: String]?
        }
        func load(_ name: String) throws -> Data {
            do { return try Data(contentsOf: directory.appendingPathComponent(name)) } catch {
                throw LoadError(description: "RestSpecCatalog: cannot read \(name) in \(directory.path): \(error)")
            }
        }
        let versions: Versions
        do { versions = try JSONDecoder().decode(Versions.self, from: load("versions.json")) } catch let error as LoadError {
            throw error
        } catch { throw LoadError(description: "RestSpecCatalog: versions.json has no families/specFile: \(error)") }
        var documents: [String: JSON] = [:]
        for file in Set(versions.families.values.map(\.specFile)).union((versions.refMap ?? [:]).values) {
            do { documents[file] = try JSON(parsing: load(file)) } catch let error as LoadError {
                throw error
            } catch { throw LoadError(description: "RestSpecCatalog: \(file) is not JSON: \(error)") }
        }
        self.documents = documents
        refMap = (versions.refMap ?? [:]).map { (suffix: $0.key, file: $0.value) }.sorted { $0.suffix.count > $1.suffix.count }
        var operations: [Operation] = []
        for (family, entry) in versions.families.sorted(by: { $0.key < $1.key }) {
            let spec = documents[entry.specFile] ?? .null
            // The extract names its own version; versions.json's newest stable version is the fallback.
            guard let version = spec["info"]?["version"]?.string ?? entry.stable?.first else {
                throw LoadError(description: "RestSpecCatalog: \(entry.specFile) names no info.version")
            }
            for pathsKey in ["paths", "x-ms-paths"] {
                for (key, item) in (spec[pathsKey]?.object ?? [:]).sorted(by: { $0.key < $1.key }) {
                    for (method, op) in (item.object ?? [:]).sorted(by: { $0.key < $1.key })
                    where method != "parameters" && !method.hasPrefix("x-") {
                        var parameters: [Parameter] = []
                        // Operation-level parameters override path-level ones with the same name and location.
                        for raw in (item["parameters"]?.array ?? []) + (op["parameters"]?.array ?? []) {
                            let node = try Self.resolveParameter(raw, in: entry.specFile, documents: documents, refMap: refMap)
                            guard let name = node.json["name"]?.string, let location = node.json["in"]?.string else {
                                throw LoadError(description: "RestSpecCatalog: a parameter of \(method) \(key) in \(entry.specFile) has no name/in")
                            }
                            parameters.removeAll { $0.name == name && $0.location == location }
                            let schema = location != "body" ? node
                                : Node(json: node.json["schema"] ?? .object([:]), doc: node.doc, origin: "\(node.origin)/schema")
                            let required = node.json["required"]?.bool ?? false
                            parameters.append(Parameter(name: name, location: location, required: required, schema: schema))
                        }
                        operations.append(Operation(
                            family: family, specFile: entry.specFile, version: version, stable: entry.stable ?? [version],
                            method: method.uppercased(), key: key, parameters: parameters,
                            operationId: op["operationId"]?.string ?? "\(method.uppercased()) \(key)"))
                    }
                }
            }
        }
        self.operations = operations
        try checkReferences()
    }

    /// Problems of `request` against the spec, or `[]` when it matches an operation: path template (literal
    /// segments case-insensitive, `{param}` one non-empty segment satisfying the parameter's constraints), method,
    /// `api-version` equal to the spec's version, query parameters, and the JSON body against the body schema.
    /// ARM next links (a `$skipToken` query) are checked by path and method only: Azure builds their query.
    func problems(_ request: RecordedRequest) -> [String] {
        let req = ParsedRequest(request)
        let byPath = matches(req)
        guard !byPath.isEmpty else {
            return ["\(req.display) matches no operation path of the specs\(closest(to: req))."]
        }
        guard let (op, captures) = best(byPath.filter { $0.op.method == req.method }) else {
            let op = byPath[0].op, allowed = Set(byPath.map(\.op.method)).sorted().joined(separator: ", ")
            return ["\(req.display) uses method \(req.method), but \(op.template) in \(op.specFile) defines only \(allowed)."]
        }
        var out: [String] = []
        for case .parameter(let name, _) in op.segments {
            if let param = op.parameters.first(where: { $0.name == name && $0.location == "path" }), let value = captures[name] {
                validate(.string(value), param.schema, at: "path parameter '\(name)'", &out)
            }
        }
        let isNextLink = req.query.contains { $0.name.lowercased() == "$skiptoken" }
        if !isNextLink { checkQuery(req, op, &out) }
        checkBody(request.body, op, &out)
        return out.map { "\(req.display) against \(op.operationId) (\(op.method) \(op.template) in \(op.specFile)): \($0)" }
    }

    /// The operationId that `request`'s path and method select (whatever else is wrong with it), or nil.
    /// operationIds are unique per spec, not across families (DevTest Labs and Compute both have
    /// `VirtualMachines_Get`): coverage reports that span families should key on `operation(for:)`'s family too.
    func operationId(_ request: RecordedRequest) -> String? {
        operation(for: request)?.operationId
    }

    /// The operation that `request`'s path and method select, or nil.
    func operation(for request: RecordedRequest) -> OperationSummary? {
        let req = ParsedRequest(request)
        return best(matches(req).filter { $0.op.method == req.method })?.op.summary
    }

    /// Every operation of every family, in family and path order: the denominator of a coverage report.
    var allOperations: [OperationSummary] { operations.map(\.summary) }

    /// The operations with this operationId (more than one when families share a name), optionally in one family.
    func operations(named operationId: String, family: String? = nil) -> [OperationSummary] {
        operations.filter { $0.operationId == operationId && (family == nil || $0.family == family) }.map(\.summary)
    }
}

// MARK: - Model

extension RestSpecCatalog {
    /// A JSON value that is Sendable (JSONSerialization's `Any` is not) and keeps booleans apart from numbers.
    fileprivate enum JSON: Sendable, Equatable {
        case null, bool(Bool), integer(Int64), number(Double), string(String), array([JSON]), object([String: JSON])

        /// Parsed with JSONSerialization rather than a Decodable enum: probing each node with `try?` throws many
        /// errors, and Swift Testing records a backtrace for every thrown error, which made loading 10x slower.
        init(parsing data: Data) throws {
            self.init(any: try JSONSerialization.jsonObject(with: data, options: .fragmentsAllowed))
        }

        private init(any: Any) {
            switch any {
            case let text as String: self = .string(text)
            case let object as [String: Any]: self = .object(object.mapValues(JSON.init(any:)))
            case let array as [Any]: self = .array(array.map(JSON.init(any:)))
            // JSON booleans come back as char-typed NSNumbers ("c") on Linux and Darwin; numbers never do.
            case let number as NSNumber:
                switch String(cString: number.objCType) {
                case "c", "B": self = .bool(number.boolValue)
                case "f", "d": self = .number(number.doubleValue)
                default: self = .integer(number.int64Value)
                }
            default: self = .null
            }
        }

        subscript(key: String) -> JSON? { if case .object(let o) = self { o[key] } else { nil } }
        var object: [String: JSON]? { if case .object(let o) = self { o } else { nil } }
        var array: [JSON]? { if case .array(let a) = self { a } else { nil } }
        var string: String? { if case .string(let s) = self { s } else { nil } }
        var bool: Bool? { if case .bool(let b) = self { b } else { nil } }
        var double: Double? {
            switch self { case .integer(let i): Double(i); case .number(let d): d; default: nil }
        }

        /// Short rendering for messages.
        var brief: String {
            switch self {
            case .null: "null"
            case .bool(let b): "\(b)"
            case .integer(let i): "\(i)"
            case .number(let d): "\(d)"
            case .string(let s): "'\(s)'"
            case .array: "an array"
            case .object: "an object"
            }
        }
    }

    /// A schema (or parameter) and where it was found: `doc` resolves its same-file `$ref`s, `origin` names it in
    /// messages (file#/json/pointer).
    fileprivate struct Node: Sendable {
        var json: JSON
        var doc: String
        var origin: String
    }

    fileprivate enum Segment: Sendable {
        case literal(String)
        case parameter(String, multi: Bool)
    }

    fileprivate struct Parameter: Sendable {
        var name: String
        var location: String
        var required: Bool
        /// The body schema for `in: body`, otherwise the parameter object itself (it carries type/enum/pattern).
        var schema: Node
    }

    fileprivate struct Operation: Sendable {
        var family: String, specFile: String, version: String, stable: [String]
        var method: String, template: String, segments: [Segment], fixedQuery: [String: String]
        var operationId: String
        var parameters: [Parameter]

        /// `key` is the paths (or x-ms-paths) key: the template, and for x-ms-paths perhaps a fixed query
        /// ("/path?action=x") that tells operations on one path apart.
        init(family: String, specFile: String, version: String, stable: [String], method: String, key: String,
             parameters: [Parameter], operationId: String) {
            (self.family, self.specFile, self.version, self.stable, self.method) = (family, specFile, version, stable, method)
            (self.operationId, self.parameters) = (operationId, parameters)
            let parts = key.split(separator: "?", maxSplits: 1).map(String.init)
            template = parts[0]
            fixedQuery = (parts.count > 1 ? parts[1] : "").split(separator: "&").reduce(into: [:]) { query, item in
                let pair = item.split(separator: "=", maxSplits: 1).map(String.init)
                query[pair[0]] = pair.count > 1 ? pair[1] : ""
            }
            segments = template.split(separator: "/").map { part in
                guard part.hasPrefix("{"), part.hasSuffix("}") else { return .literal(part.lowercased()) }
                let name = String(part.dropFirst().dropLast())
                // x-ms-skip-url-encoding parameters carry pre-encoded paths ("parent/child", or empty for a
                // top-level resource), so they may span any number of segments.
                let param = parameters.first { $0.name == name && $0.location == "path" }
                return .parameter(name, multi: param?.schema.json["x-ms-skip-url-encoding"]?.bool ?? false)
            }
        }

        var summary: OperationSummary {
            OperationSummary(
                operationId: operationId, method: method, pathTemplate: template, apiVersion: version,
                family: family, specFile: specFile, stableVersions: stable,
                bodyParameter: parameters.first { $0.location == "body" }?.name,
                queryParameters: parameters.filter { $0.location == "query" && $0.name != "api-version" }.map(\.name))
        }
    }

    /// The request's path segments (percent-decoded) and query items.
    fileprivate struct ParsedRequest {
        var method: String
        var segments: [String]
        var query: [(name: String, value: String)]
        var display: String

        init(_ request: RecordedRequest) {
            let parts = URLComponents(url: request.url, resolvingAgainstBaseURL: false)
            let path = parts?.percentEncodedPath ?? request.url.path
            method = request.method.uppercased()
            segments = path.split(separator: "/", omittingEmptySubsequences: false)
                .dropFirst(path.hasPrefix("/") ? 1 : 0).map { $0.removingPercentEncoding ?? String($0) }
            query = (parts?.queryItems ?? []).map { (name: $0.name, value: $0.value ?? "") }
            display = "\(method) \(path)" + (parts?.percentEncodedQuery.map { "?\($0)" } ?? "")
        }
    }

    /// A schema with `$ref` resolved and `allOf` merged: the facts validation needs, gathered once per node.
    fileprivate struct Flat {
        var origin: String
        var type: String?
        var properties: [String: Node] = [:]
        var required: Set<String> = []
        var additional: Node?
        var closed = false
        var enumValues: [JSON]?
        var modelAsString = false
        var format: String?
        var items: Node?
        var readOnly = false
        var nullable = false
        var pattern: String?
        var minLength: Int?, maxLength: Int?
        var minimum: Double?, maximum: Double?
    }
}

// MARK: - Loading

extension RestSpecCatalog {
    /// The node a `$ref` names: same-file refs stay in `doc`, others go through the refMap (matched by path suffix,
    /// since the published refs climb `../../..` out of the spec folder) or else by file name.
    fileprivate static func lookup(
        _ ref: String, from doc: String, documents: [String: JSON], refMap: [(suffix: String, file: String)]
    ) -> Node? {
        let parts = ref.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let pointer = parts.count > 1 ? parts[1] : ""
        let file = parts[0].isEmpty ? doc
            : refMap.first { parts[0] == $0.suffix || parts[0].hasSuffix("/" + $0.suffix) }?.file ?? (parts[0] as NSString).lastPathComponent
        guard var json = documents[file] else { return nil }
        for token in pointer.split(separator: "/") {
            let key = token.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            guard let next = json[key] else { return nil }
            json = next
        }
        return Node(json: json, doc: file, origin: "\(file)#\(pointer)")
    }

    fileprivate static func resolveParameter(
        _ raw: JSON, in doc: String, documents: [String: JSON], refMap: [(suffix: String, file: String)]
    ) throws -> Node {
        guard let ref = raw["$ref"]?.string else {
            return Node(json: raw, doc: doc, origin: "\(doc) parameter '\(raw["name"]?.string ?? "?")'")
        }
        guard let node = lookup(ref, from: doc, documents: documents, refMap: refMap) else {
            throw LoadError(description: "RestSpecCatalog: cannot resolve parameter $ref \(ref) in \(doc) (missing refMap entry?)")
        }
        return node
    }

    /// Walks every loaded file once: every `$ref` must resolve and every `pattern` must compile.
    private func checkReferences() throws {
        func walk(_ json: JSON, _ doc: String) throws {
            switch json {
            case .object(let o):
                if let ref = o["$ref"]?.string, resolve(ref, from: doc) == nil {
                    throw LoadError(description: "RestSpecCatalog: cannot resolve $ref \(ref) in \(doc) (missing refMap entry?)")
                }
                if let pattern = o["pattern"]?.string, (try? NSRegularExpression(pattern: pattern)) == nil {
                    throw LoadError(description: "RestSpecCatalog: pattern \(pattern) in \(doc) is not a valid regular expression")
                }
                for value in o.values { try walk(value, doc) }
            case .array(let a): for value in a { try walk(value, doc) }
            default: break
            }
        }
        for (doc, json) in documents { try walk(json, doc) }
    }

    private func resolve(_ ref: String, from doc: String) -> Node? {
        Self.lookup(ref, from: doc, documents: documents, refMap: refMap)
    }
}

// MARK: - Matching

extension RestSpecCatalog {
    /// Operations whose path template (and x-ms-paths fixed query) match, with the captured path parameters.
    private typealias Match = (op: Operation, captures: [String: String])

    private func matches(_ req: ParsedRequest) -> [Match] {
        operations.compactMap { op in
            let fixedQueryMatches = op.fixedQuery.allSatisfy { fixed in req.query.contains { $0 == (fixed.key, fixed.value) } }
            guard fixedQueryMatches else { return nil }
            var captures: [String: String] = [:]
            return Self.match(op.segments[...], req.segments[...], &captures) ? (op, captures) : nil
        }
    }

    /// Segment matcher with backtracking, needed only for multi-segment (skip-url-encoding) parameters.
    private static func match(
        _ template: ArraySlice<Segment>, _ path: ArraySlice<String>, _ captures: inout [String: String]
    ) -> Bool {
        guard let first = template.first else { return path.isEmpty }
        switch first {
        case .literal(let literal):
            guard let segment = path.first, segment.lowercased() == literal else { return false }
            return match(template.dropFirst(), path.dropFirst(), &captures)
        case .parameter(let name, multi: false):
            guard let segment = path.first, !segment.isEmpty else { return false }
            captures[name] = segment
            return match(template.dropFirst(), path.dropFirst(), &captures)
        case .parameter(let name, multi: true):
            for count in 0...path.count {
                captures[name] = path.prefix(count).joined(separator: "/")
                if match(template.dropFirst(), path.dropFirst(count), &captures) { return true }
            }
            return false
        }
    }

    /// The most specific candidate: most literal segments, then fixed query parameters.
    private func best(_ candidates: [Match]) -> Match? {
        func rank(_ op: Operation) -> Int {
            op.segments.reduce(0) { if case .literal = $1 { $0 + 2 } else { $0 } } + op.fixedQuery.count
        }
        return candidates.max { rank($0.op) < rank($1.op) }
    }

    /// A hint for unknown paths: the template sharing the most aligned segments with the request, where a
    /// literal off by a typo (edit distance <= 2) still counts, and the request's method breaks ties.
    private func closest(to req: ParsedRequest) -> String {
        func score(_ op: Operation) -> Int {
            zip(op.segments, req.segments).reduce(0) { total, pair in
                guard case .literal(let literal) = pair.0 else { return total + (pair.1.isEmpty ? 0 : 2) }
                let distance = Self.editDistance(literal, pair.1.lowercased())
                return total + (distance == 0 ? 4 : distance <= 2 ? 3 : 0)
            } - 4 * abs(op.segments.count - req.segments.count) + (op.method == req.method ? 1 : 0)
        }
        guard let op = operations.max(by: { score($0) < score($1) }) else { return "" }
        return " (closest: \(op.method) \(op.template) in \(op.specFile))"
    }

    /// Levenshtein distance, for the typo hint only.
    private static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        guard !a.isEmpty else { return b.count }
        var row = Array(0...b.count)
        for i in 1...a.count {
            var previous = row[0]
            row[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let current = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = current
            }
        }
        return row[b.count]
    }
}

// MARK: - Checks

extension RestSpecCatalog {
    private func checkQuery(_ req: ParsedRequest, _ op: Operation, _ out: inout [String]) {
        let versions = req.query.filter { $0.name == "api-version" }.map(\.value)
        if versions.isEmpty {
            out.append("the required query parameter api-version is missing (the spec is version \(op.version)).")
        } else if versions.count > 1 {
            out.append("api-version is sent \(versions.count) times (\(versions.joined(separator: ", "))); send it once, as \(op.version).")
        } else if let sent = versions.first, sent != op.version {
            let hint = op.stable.contains(sent) ? "\(sent) is an older stable version of \(op.family); the tests pin the newest"
                : "\(sent) is not a stable version of \(op.family): \(op.stable.joined(separator: ", "))"
            out.append("api-version is \(sent) but the spec is version \(op.version) (\(hint)).")
        }
        let declared = op.parameters.filter { $0.location == "query" && $0.name != "api-version" }
        for param in declared {
            let sent = req.query.filter { $0.name == param.name }
            if sent.isEmpty, param.required, op.fixedQuery[param.name] == nil {
                out.append("the required query parameter \(param.name) is missing.")
            }
            for item in sent {
                let value = Self.scalar(item.value, as: param.schema.json["type"]?.string)
                validate(value, param.schema, at: "query parameter \(param.name)", &out)
            }
        }
        let known = ["api-version"] + declared.map(\.name) + op.fixedQuery.keys
        for item in req.query where !known.contains(item.name) {
            out.append("query parameter \(item.name) is not declared by the operation (declared: \(known.joined(separator: ", "))).")
        }
    }

    /// A query/path string typed as the parameter declares, so integer/boolean parameters are checked as such.
    private static func scalar(_ text: String, as type: String?) -> JSON {
        switch type {
        case "integer": Int64(text).map(JSON.integer) ?? .string(text)
        case "number": Double(text).map(JSON.number) ?? .string(text)
        case "boolean": text == "true" ? .bool(true) : text == "false" ? .bool(false) : .string(text)
        default: .string(text)
        }
    }

    private func checkBody(_ body: Data?, _ op: Operation, _ out: inout [String]) {
        let text = body.map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
        guard let param = op.parameters.first(where: { $0.location == "body" }) else {
            // An empty object is what many clients send on POST actions; ARM ignores it.
            if !text.isEmpty, text != "{}" { out.append("the request has a body but the operation takes none.") }
            return
        }
        guard !text.isEmpty else {
            if param.required { out.append("the body is missing; the operation requires body parameter '\(param.name)'.") }
            return
        }
        guard let json = try? JSON(parsing: Data(text.utf8)) else {
            out.append("the body is not valid JSON.")
            return
        }
        validate(json, param.schema, at: "body", &out)
    }

    private func validate(_ value: JSON, _ node: Node, at path: String, _ out: inout [String]) {
        check(value, flatten(node), at: path, &out)
    }

    /// Resolves `$ref` (sibling keywords such as `readOnly` still apply) and merges `allOf` bases, so a derived
    /// model knows its base's properties and required list. `seen` stops reference cycles.
    private func flatten(_ node: Node, seen: Set<String> = []) -> Flat {
        var flat = Flat(origin: node.origin)
        guard let s = node.json.object else { return flat }
        if let ref = s["$ref"]?.string, let target = resolve(ref, from: node.doc), !seen.contains(target.origin) {
            flat = flatten(target, seen: seen.union([target.origin]))
        }
        for (index, member) in (s["allOf"]?.array ?? []).enumerated() {
            let base = flatten(Node(json: member, doc: node.doc, origin: "\(node.origin)/allOf/\(index)"), seen: seen)
            flat.properties.merge(base.properties) { own, _ in own }
            flat.required.formUnion(base.required)
            flat.additional = flat.additional ?? base.additional
            flat.closed = flat.closed || base.closed
            flat.type = flat.type ?? base.type
        }
        if let type = s["type"]?.string { flat.type = type }
        for (name, schema) in s["properties"]?.object ?? [:] {
            flat.properties[name] = Node(json: schema, doc: node.doc, origin: "\(node.origin)/properties/\(name)")
        }
        flat.required.formUnion((s["required"]?.array ?? []).compactMap(\.string))
        switch s["additionalProperties"] {
        case .bool(false)?: flat.closed = true
        case .bool(true)?: flat.additional = Node(json: .object([:]), doc: node.doc, origin: node.origin)
        case let schema?: flat.additional = Node(json: schema, doc: node.doc, origin: "\(node.origin)/additionalProperties")
        case nil: break
        }
        if let values = s["enum"]?.array { flat.enumValues = values }
        if let modelAsString = s["x-ms-enum"]?["modelAsString"]?.bool { flat.modelAsString = modelAsString }
        if let items = s["items"] { flat.items = Node(json: items, doc: node.doc, origin: "\(node.origin)/items") }
        flat.format = s["format"]?.string ?? flat.format
        flat.readOnly = s["readOnly"]?.bool ?? flat.readOnly
        flat.nullable = s["x-nullable"]?.bool ?? flat.nullable
        flat.pattern = s["pattern"]?.string ?? flat.pattern
        flat.minLength = s["minLength"]?.double.map { Int($0) } ?? flat.minLength
        flat.maxLength = s["maxLength"]?.double.map { Int($0) } ?? flat.maxLength
        flat.minimum = s["minimum"]?.double ?? flat.minimum
        flat.maximum = s["maximum"]?.double ?? flat.maximum
        return flat
    }

    private func check(_ value: JSON, _ f: Flat, at path: String, _ out: inout [String]) {
        let type = f.type ?? (!f.properties.isEmpty || f.additional != nil ? "object" : f.items != nil ? "array" : nil)
        if value == .null {
            if !f.nullable, type != nil || f.enumValues != nil {
                out.append("\(path) is null but \(f.origin) declares \(type ?? "an enum") and no x-nullable.")
            }
            return
        }
        func mismatch() {
            out.append("\(path) is \(value.brief) but \(f.origin) declares type \(type ?? "?")\(f.format.map { " (\($0))" } ?? "").")
        }
        func checkRange(_ number: Double) {
            if let min = f.minimum, number < min { out.append("\(path) \(value.brief) is below the minimum \(min) (\(f.origin)).") }
            if let max = f.maximum, number > max { out.append("\(path) \(value.brief) is above the maximum \(max) (\(f.origin)).") }
        }
        switch type {
        case "object":
            guard case .object(let object) = value else { return mismatch() }
            // Read-only properties are filled by the service, so a request never has to send them.
            for name in f.required.sorted() where object[name] == nil {
                if let schema = f.properties[name], flatten(schema).readOnly { continue }
                out.append("\(path) is missing the required property '\(name)' (\(f.origin)).")
            }
            for (name, child) in object.sorted(by: { $0.key < $1.key }) {
                let childPath = "\(path).\(name)"
                if let schema = f.properties[name] {
                    let pf = flatten(schema)
                    if pf.readOnly {
                        out.append("\(childPath) is read-only (\(schema.origin)) and must not be sent.")
                    } else {
                        check(child, pf, at: childPath, &out)
                    }
                } else if let additional = f.additional {
                    validate(child, additional, at: childPath, &out)
                } else if !f.properties.isEmpty || f.closed {
                    // An object with declared properties and no additionalProperties is closed: an undeclared
                    // field is exactly the client mistake (typo, wrong nesting) these checks exist for.
                    let sameCase = f.properties.keys.first { $0.lowercased() == name.lowercased() }
                    let known = f.properties.keys.sorted().joined(separator: ", ")
                    out.append("\(childPath) is not a property of \(f.origin)\(sameCase.map { " (did you mean '\($0)'?)" } ?? ""); known: \(known).")
                }
                // else: `type: object` without properties is free-form (e.g. an ARM template): anything goes.
            }
        case "array":
            guard case .array(let items) = value else { return mismatch() }
            for (index, item) in items.enumerated() {
                if let schema = f.items { validate(item, schema, at: "\(path)[\(index)]", &out) }
            }
        case "string":
            guard case .string(let text) = value else { return mismatch() }
            let length = text.unicodeScalars.count
            if let min = f.minLength, length < min { out.append("\(path) '\(text)' is shorter than \(min) characters (\(f.origin)).") }
            if let max = f.maxLength, length > max { out.append("\(path) '\(text)' is longer than \(max) characters (\(f.origin)).") }
            if let pattern = f.pattern, let regex = try? NSRegularExpression(pattern: pattern),
               regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) == nil {
                out.append("\(path) '\(text)' does not match the pattern \(pattern) (\(f.origin)).")
            }
        case "integer":
            guard let number = value.double, number.rounded() == number else { return mismatch() }
            if f.format == "int32", number < Double(Int32.min) || number > Double(Int32.max) {
                out.append("\(path) \(value.brief) does not fit int32 (\(f.origin)).")
            }
            checkRange(number)
        case "number":
            guard let number = value.double else { return mismatch() }
            checkRange(number)
        case "boolean":
            guard case .bool = value else { return mismatch() }
        default:
            break
        }
        // x-ms-enum modelAsString: true is an extensible enum (any string is accepted by the service and the SDKs);
        // otherwise the value must be one of the listed ones, exactly as the SDKs serialise them.
        if let values = f.enumValues, !(f.modelAsString && value.string != nil), !values.contains(value) {
            let caseOnly = values.first { $0.string?.lowercased() == value.string?.lowercased() && value.string != nil }
            let hint = caseOnly.map { " (differs only in case from \($0.brief))" } ?? ""
            out.append("\(path) is \(value.brief), not one of \(values.map(\.brief).joined(separator: ", ")) (\(f.origin))\(hint).")
        }
    }
}

extension RestSpecCatalog {
    /// The catalog of the Specs folder next to this file, loaded once per test process (a static let is
    /// initialised lazily and exactly once); a load error surfaces in every test that calls `get()`.
    static let bundled = Result {
        try RestSpecCatalog(directory: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Specs"))
    }
}
