/**
 * The one renderer of the HAProxy configuration files tests run with (HaproxyProcess renders every file it writes):
 * templates with `${NAME}` placeholders — HAProxy's own environment-variable syntax, so deploy/haproxy's files
 * (`"${NAME-default}"`) are templates as they are. Every placeholder is resolved here, never left to HAProxy:
 * - `${NAME}` takes `vars.NAME`, `${NAME-default}` the default when `vars` has no NAME;
 * - a placeholder alone on its line takes a list of lines too, each indented as the placeholder; an empty value
 *   (`''` or `[]`) removes such a line;
 * - a placeholder without a value, or a value that no placeholder uses (a misspelt name), is an error.
 */

/** Values of the placeholders: a string or number, or lines. */
export type TemplateVars = Readonly<Record<string, string | number | readonly string[]>>;

const PLACEHOLDER = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?:-([^}]*))?\}/g;
const WHOLE_LINE = /^([ \t]*)\$\{([A-Za-z_][A-Za-z0-9_]*)\}[ \t]*$/;

/** The placeholders of a template, in order: name and default (undefined when it has none). */
export function templatePlaceholders(
  template: string,
): Array<{ readonly name: string; readonly fallback: string | undefined }> {
  return [...template.matchAll(PLACEHOLDER)].map((m) => ({ name: m[1], fallback: m[2] }));
}

/** Renders every file of `templates` (by file name) with `vars`; see the file's header for the rules. */
export function renderTemplates(
  templates: Readonly<Record<string, string>>,
  vars: TemplateVars = {},
): Record<string, string> {
  const used = new Set<string>();
  const problems: string[] = [];
  const rendered: Record<string, string> = {};
  for (const [file, template] of Object.entries(templates)) {
    const value = (name: string, fallback: string | undefined): string | readonly string[] | undefined => {
      used.add(name);
      const v = vars[name] ?? fallback;
      if (v === undefined) problems.push(`${file}: no value for \${${name}}`);
      return typeof v === 'number' ? String(v) : v;
    };
    const lines: string[] = [];
    for (const line of template.split('\n')) {
      const whole = WHOLE_LINE.exec(line);
      if (whole) {
        const v = value(whole[2], undefined) ?? [];
        for (const l of typeof v === 'string' ? (v === '' ? [] : [v]) : v) lines.push(`${whole[1]}${l}`);
        continue;
      }
      lines.push(
        line.replace(PLACEHOLDER, (placeholder: string, name: string, fallback: string | undefined) => {
          const v = value(name, fallback);
          if (Array.isArray(v)) problems.push(`${file}: \${${name}} takes lines but is not alone on its line`);
          return typeof v === 'string' ? v : placeholder;
        }),
      );
    }
    rendered[file] = lines.join('\n');
  }
  for (const name of Object.keys(vars))
    if (!used.has(name)) problems.push(`no placeholder \${${name}} in ${Object.keys(templates).join(', ')}`);
  if (problems.length > 0) throw new Error(`cannot render the HAProxy configuration:\n  ${problems.join('\n  ')}`);
  return rendered;
}
