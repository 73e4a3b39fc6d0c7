//! The OpenAPI 3.1 document served at `/openapi.json`.

use serde_json::{json, Value};

fn op(summary: &str, body: Option<&str>, ok: &str) -> Value {
    let mut o = json!({
        "summary": summary,
        "security": [{ "bearer": [] }],
        "responses": {
            ok: { "description": "success" },
            "400": { "$ref": "#/components/responses/Error" },
            "401": { "$ref": "#/components/responses/Error" },
            "403": { "$ref": "#/components/responses/Error" },
            "404": { "$ref": "#/components/responses/Error" }
        }
    });
    if let Some(schema) = body {
        o["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } });
    }
    o
}

fn with_node(mut o: Value) -> Value {
    o["parameters"] = json!([{ "name": "node", "in": "path", "required": true, "schema": { "type": "string" }, "description": "a node name, nodeN, or the domain index" }]);
    o
}

fn id_param() -> Value {
    json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } }])
}

/// The document, every operation with an `operationId` made of its method and path
/// (`get_v1_jobs_id_why`): unique by construction, stable across releases.
pub fn document() -> Value {
    let mut d = paths_and_schemas();
    if let Some(paths) = d["paths"].as_object_mut() {
        for (path, ops) in paths.iter_mut() {
            let slug: String = path
                .split('/')
                .filter(|p| !p.is_empty())
                .map(|p| p.trim_matches(|c| c == '{' || c == '}'))
                .collect::<Vec<_>>()
                .join("_");
            if let Some(ops) = ops.as_object_mut() {
                for (method, op) in ops.iter_mut() {
                    op["operationId"] = json!(format!("{method}_{slug}"));
                }
            }
        }
    }
    d
}

fn paths_and_schemas() -> Value {
    // 1 s to 366 days (MAX_WALLTIME_S), as seconds or with a unit
    let bounded = json!({ "oneOf": [{ "type": "integer", "minimum": 1, "maximum": crate::engine::MAX_WALLTIME_S }, { "type": "string", "examples": ["90s", "45m", "1h 30m", "1.5d", "2-12:00:00", "30:00"] }] });
    let when = json!({ "oneOf": [{ "type": "integer", "minimum": 0, "description": "Unix seconds" }, { "type": "string", "examples": ["2026-12-04T18:00:00Z", "2026-12-04 18:00", "now+2h"] }], "description": "at most 10 years ahead" });
    let with_id = |mut v: Value| {
        v["parameters"] = id_param();
        v
    };
    json!({
        "openapi": "3.1.0",
        "info": { "title": "fabrik control plane", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Submit and manage jobs on an AI gigafactory. Authenticate with 'Authorization: Bearer TOKEN'." },
        "paths": {
            "/v1/jobs": {
                "post": op("Submit a job (durable before the answer)", Some("SubmitRequest"), "201"),
                "get": {
                    "summary": "List jobs visible to the token",
                    "security": [{ "bearer": [] }],
                    "parameters": [
                        { "name": "state", "in": "query", "schema": { "type": "string", "enum": ["pending", "held", "starting", "running", "completed", "failed", "cancelled", "timeout", "active"] } },
                        { "name": "account", "in": "query", "schema": { "type": "string" } },
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 100000 } },
                        { "name": "before", "in": "query", "schema": { "type": "integer" }, "description": "cursor: the previous page's next" }
                    ],
                    "responses": { "200": { "description": "jobs, newest first, and next: the cursor of the next page (null on the last)" } }
                }
            },
            "/v1/jobs/{id}": {
                "get": with_id(op("Show a job", None, "200")),
                "delete": with_id(op("Cancel a job (as POST /v1/jobs/{id}/cancel; scancel)", None, "200"))
            },
            "/v1/jobs/{id}/hold": { "post": with_id(op("Hold a pending job: out of scheduling until released (scontrol hold); 409 unless pending", None, "200")) },
            "/v1/jobs/{id}/release": { "post": with_id(op("Release a held job (scontrol release); 409 unless held", None, "200")) },
            "/v1/jobs/{id}/requeue": { "post": with_id(op("Requeue a running job: SIGTERM, back in the queue when it exits (scontrol requeue); 409 unless running", None, "200")) },
            "/v1/jobs/{id}/cancel": { "post": with_id(op("Cancel a job (SIGTERM, then SIGKILL after the grace period)", None, "200")) },
            "/v1/jobs/{id}/why": { "get": with_id(op("Why the job is where it is (the scheduler's explanation)", None, "200")) },
            "/v1/jobs/{id}/logs": { "get": with_id(op("The job's stdout or stderr (?stream=stderr, ?tail=BYTES)", None, "200")) },
            "/v1/accounts": {
                "get": op("Accounts visible to the token: entitled share, usage share, GPU-hours", None, "200"),
                "post": op("Create an account or change its shares (admin)", Some("NewAccount"), "201")
            },
            "/v1/tokens": {
                "post": op("Create a token (admin; managers for their subtree); optional expires_in seconds", Some("NewToken"), "201"),
                "get": op("Tokens this token manages (never their secrets): id, name, role, account, created, expires, revoked", None, "200")
            },
            "/v1/tokens/{id}/revoke": { "post": with_id(op("Revoke a token; refused from the next request on", None, "200")) },
            "/healthz": { "get": { "summary": "200 ok while the store takes writes (with a telemetry input: 'ok; telemetry degraded …' while it gives no fresh samples); 503 with the error while the store refuses writes", "responses": { "200": { "description": "ok" }, "503": { "$ref": "#/components/responses/Error" } } } },
            "/v1/facility": { "get": op("Facility state: GPUs busy and free by group, power", None, "200") },
            "/v1/dashboard": { "get": op("Everything the dashboard shows", None, "200") },
            "/v1/whatif": { "post": op("What-ifs from the live state (admin): the baseline and each alternative (policies, power_cap_mw, drain, energy_aware) over days of synthetic arrivals, as the compare table's rows", Some("WhatifRequest"), "200") },
            "/v1/forecast": { "get": op("P50 and P90 start forecasts of the pending jobs the caller may see", None, "200") },
            "/v1/jobs/{id}/forecast": { "get": with_id(op("One pending job's P50 and P90 start forecast and why it waits", None, "200")) },
            "/v1/snapshot": { "get": op("The brain's state as the twin's input (admin): running jobs with placement, the queue, usage, nodes out of service", None, "200") },
            "/v1/whoami": { "get": op("The token's identity", None, "200") },
            "/v1/nodes": { "get": op("Every node: group, hall, GPU type, state (in service, draining, out), why, its jobs, the health detector's view and evidence; the telemetry input's state", None, "200") },
            "/v1/nodes/{node}/drain": { "post": with_node(op("Take a node out of service (admin); its jobs are requeued; Slurm: scontrol DRAIN", Some("DrainRequest"), "200")) },
            "/v1/nodes/{node}/resume": { "post": with_node(op("Return a drained node to service (admin); 409 while its jobs are still moving off", None, "200")) },
            "/metrics": { "get": { "summary": "Prometheus metrics (needs a token when the server runs with --metrics-token)", "responses": { "200": { "description": "OpenMetrics text" } } } }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": { "Error": { "description": "error", "content": { "application/json": { "schema": { "type": "object", "properties": { "error": { "type": "string" } }, "required": ["error"] } } } } },
            "schemas": {
                "DrainRequest": { "type": "object", "properties": { "reason": { "type": "string", "minLength": 1, "maxLength": 200 } }, "required": ["reason"], "additionalProperties": false },
                "SubmitRequest": {
                    "type": "object", "additionalProperties": false, "required": ["command", "gpus", "walltime"],
                    "properties": {
                        "name": { "type": "string" },
                        "command": { "type": "array", "items": { "type": "string" }, "minItems": 1 },
                        "gpus": { "type": "integer", "minimum": 1 },
                        "walltime": bounded.clone(),
                        "account": { "type": "string" },
                        "gpu_type": { "type": "string" },
                        "qos": { "type": "string", "enum": ["high", "normal", "low"] },
                        "preemptible": { "type": "boolean" },
                        "checkpoint_interval": bounded.clone(),
                        "earliest_start": when.clone(),
                        "deadline": when,
                        "simulated_runtime": bounded,
                        "dependency": { "type": "string", "description": "sbatch's --dependency: afterok:ID[:ID], afterany:ID, after:ID, afternotok:ID, singleton; comma-separated", "examples": ["afterok:12:13,singleton"] }
                    }
                },
                "WhatifRequest": {
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "days": { "type": "number", "minimum": 0, "maximum": 60, "description": "days of synthetic arrivals after the snapshot (default 7)" },
                        "load": { "type": "number", "exclusiveMinimum": 0, "maximum": 2 },
                        "seed": { "type": "integer", "minimum": 0 },
                        "zone": { "type": "string" },
                        "policies": { "type": "array", "items": { "type": "string" }, "maxItems": 8 },
                        "power_cap_mw": { "type": "array", "items": { "type": "number", "exclusiveMinimum": 0 }, "description": "one value, or 24 (MW per hour of the day, UTC)" },
                        "drain": { "type": "array", "items": { "type": "integer", "minimum": 0 }, "description": "domain indices" },
                        "energy_aware": { "type": "string", "enum": ["carbon", "price", "both"] }
                    }
                },
                "NewAccount": { "type": "object", "additionalProperties": false, "required": ["path", "shares"],
                                "properties": { "path": { "type": "string" }, "shares": { "type": "number", "exclusiveMinimum": 0 } } },
                "NewToken": { "type": "object", "additionalProperties": false, "required": ["name", "role"],
                              "properties": { "name": { "type": "string" }, "account": { "type": "string" },
                                              "role": { "type": "string", "enum": ["admin", "manager", "user"] },
                                              "expires_in": { "type": "integer", "minimum": 1, "description": "seconds from now" } } }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` target of a JSON value.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "$ref" {
                        out.push(x.as_str().unwrap_or("").to_string());
                    } else {
                        refs(x, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_valid_openapi() {
        let d = document();
        assert_eq!(d["openapi"], "3.1.0");
        assert!(d["info"]["title"].is_string() && d["info"]["version"].is_string());
        let paths = d["paths"].as_object().unwrap();
        let mut ids = std::collections::BTreeSet::new();
        for (path, ops) in paths {
            assert!(path.starts_with('/'), "{path}");
            for (method, op) in ops.as_object().unwrap() {
                assert!(["get", "post", "delete", "put", "patch"].contains(&method.as_str()), "{path} {method}");
                assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}: responses");
                assert!(ids.insert(op["operationId"].as_str().unwrap().to_string()), "{method} {path}: operationId");
                // every {param} of the path is declared as a path parameter
                for seg in path.split('/').filter(|s| s.starts_with('{')) {
                    let name = seg.trim_matches(|c| c == '{' || c == '}');
                    let declared = op["parameters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true);
                    assert!(declared, "{method} {path}: path parameter {name}");
                }
            }
        }
        let mut targets = Vec::new();
        refs(&d, &mut targets);
        assert!(!targets.is_empty());
        for t in targets {
            let ptr = t.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {t}"));
            assert!(d.pointer(ptr).is_some(), "$ref {t} resolves to nothing");
        }
        // the routes the server serves are documented (api::router)
        for p in [
            "/v1/jobs",
            "/v1/jobs/{id}",
            "/v1/jobs/{id}/hold",
            "/v1/jobs/{id}/release",
            "/v1/jobs/{id}/requeue",
            "/v1/jobs/{id}/cancel",
            "/v1/jobs/{id}/why",
            "/v1/jobs/{id}/logs",
            "/v1/jobs/{id}/forecast",
            "/v1/accounts",
            "/v1/tokens",
            "/v1/tokens/{id}/revoke",
            "/v1/facility",
            "/v1/nodes",
            "/v1/nodes/{node}/drain",
            "/v1/nodes/{node}/resume",
            "/v1/dashboard",
            "/v1/snapshot",
            "/v1/forecast",
            "/v1/whatif",
            "/v1/whoami",
            "/healthz",
            "/metrics",
        ] {
            assert!(paths.contains_key(p), "{p} is not documented");
        }
        assert_eq!(d["paths"]["/v1/jobs/{id}/why"]["get"]["operationId"], "get_v1_jobs_id_why");
    }
}
