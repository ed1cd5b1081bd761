/**
 * Command-line parsing: long options (`--name`, `--name=value`), short ones
 * (`-C DIR`, `-CDIR`, `-vh`), positionals, and `--` ending the options.
 * Written here rather than taken from node:util, whose loading (the Node
 * compatibility layer) cost more start-up time than most commands' work.
 *
 * @example
 * ```ts
 * const spec = { C: { type: "string", short: "C" }, json: { type: "boolean" } } as const;
 * parseArgs(["sync", "-C", "/srv/a", "--json", "peer"], spec);
 * // { values: { C: "/srv/a", json: true }, positionals: ["sync", "peer"] }
 * ```
 *
 * @module
 */

/** One option: a string takes a value, a boolean does not. */
export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
}

/** What was given: each option's value, and the words that are not options. */
export interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** A word that is not a valid use of the options. */
export class ArgsError extends Error {}

/** Parses `args` against `options` (keyed by long name). Throws ArgsError. */
export function parseArgs(args: string[], options: Record<string, OptionSpec>): Parsed {
  const byShort = new Map<string, string>();
  for (const [name, spec] of Object.entries(options)) if (spec.short) byShort.set(spec.short, name);
  const out: Parsed = { values: {}, positionals: [] };
  for (let i = 0; i < args.length; i++) {
    const word = args[i];
    const takeValue = (name: string, inline: string | undefined): void => {
      if (options[name].type === "boolean") {
        if (inline !== undefined) throw new ArgsError(`option --${name} takes no value`);
        out.values[name] = true;
        return;
      }
      const value = inline ?? args[++i];
      if (value === undefined) throw new ArgsError(`option --${name} needs a value`);
      out.values[name] = value;
    };
    if (word === "--") {
      out.positionals.push(...args.slice(i + 1));
      break;
    }
    if (word.startsWith("--")) {
      const eq = word.indexOf("=");
      const name = word.slice(2, eq < 0 ? undefined : eq);
      if (!Object.hasOwn(options, name)) throw new ArgsError(`unknown option --${name}`);
      takeValue(name, eq < 0 ? undefined : word.slice(eq + 1));
    } else if (word.startsWith("-") && word.length > 1) {
      for (let k = 1; k < word.length; k++) {
        const name = byShort.get(word[k]);
        if (name === undefined) throw new ArgsError(`unknown option -${word[k]}`);
        if (options[name].type === "string") {
          takeValue(name, k + 1 < word.length ? word.slice(k + 1) : undefined);
          break;
        }
        takeValue(name, undefined);
      }
    } else {
      out.positionals.push(word);
    }
  }
  return out;
}
