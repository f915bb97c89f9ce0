// allowed-registries-js: a repoint policy in JavaScript.
//
// Images must come from a registry (or registry/path prefix) listed in
// `allow`; an image tagged `:latest` gets a warning. The host hands over
// each resource already taken apart, its images parsed and normalized
// (`nginx` is docker.io/library/nginx here), so the rule is only the rule.
//
// The exports are the contract's (wit/world.wit): records are objects with
// camelCase fields, variants are `{tag, val}`, and throwing a string from a
// function returning `result` is its error.

const SETTINGS_SCHEMA = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  title: "allowed-registries-js settings",
  type: "object",
  additionalProperties: false,
  required: ["allow"],
  properties: {
    allow: {
      type: "array",
      minItems: 1,
      items: { type: "string" },
      description: "Registries, or registry/path prefixes, images may come from.",
    },
  },
};

// Set by `configure`, which the host calls before any `evaluate`.
let allow = [];

/** Whether registry/repository is an `allow` entry or lies below one. */
function isAllowed(image) {
  const path = `${image.registry}/${image.repository}`;
  return allow.some((entry) => path === entry || path.startsWith(`${entry}/`));
}

export function info() {
  return {
    name: "allowed-registries-js",
    version: "0.1.0",
    description: "Deny images from registries not in `allow`; warn on :latest",
    mutating: false,
    settingsSchema: JSON.stringify(SETTINGS_SCHEMA),
  };
}

/** Check the settings once, so `evaluate` can trust them. */
export function configure(settingsJson) {
  const settings = JSON.parse(settingsJson);
  if (settings === null || typeof settings !== "object" || Array.isArray(settings)) {
    throw "settings: expected a mapping";
  }
  const unknown = Object.keys(settings).filter((key) => key !== "allow").sort();
  if (unknown.length > 0) {
    throw `unknown setting "${unknown[0]}" (known: allow)`;
  }
  const entries = settings.allow;
  if (!Array.isArray(entries) || !entries.every((entry) => typeof entry === "string")) {
    throw "allow: expected a list of registries";
  }
  if (entries.length === 0) {
    throw "allow: list at least one registry";
  }
  allow = entries.map((entry) => entry.replace(/\/+$/, ""));
}

/**
 * The parts of a resource `evaluate` reads besides its images (always
 * given): none. The host shows it nothing else, and answers a resource
 * whose images it has already judged without running it again.
 */
export function reads() {
  return {
    namespace: false,
    name: false,
    labels: false,
    annotations: false,
    pullSecrets: false,
    serviceAccount: false,
    origin: false,
    objectJson: false,
  };
}

export function evaluate(resource) {
  const actions = [];
  for (const site of resource.images) {
    const image = site.image;
    if (!isAllowed(image)) {
      actions.push({
        tag: "deny",
        val: `${site.written} comes from ${image.registry}, which is not an allowed registry`,
      });
    }
    if (image.tag === "latest") {
      actions.push({ tag: "warn", val: `${site.written} uses :latest; pin a version` });
    }
  }
  return actions;
}
