// The console's languages: one catalogue per language (en.json, zh-CN.json, served beside this
// file), the choice of language, and the words the page shows. Page logic never holds text of
// its own: it names a catalogue key, and codes from the API (statuses, categories, error codes)
// are looked up here too, while the API itself keeps speaking its codes and English messages.
//
// The choice is remembered in localStorage under LANGUAGE_SLOT, and that is the only thing this
// console ever writes there (the finance key stays in the tab's session, see console.js).

/** The languages there is a catalogue for; the first is the fallback. */
export const LANGUAGES = ['en', 'zh-CN'];

const LANGUAGE_SLOT = 'paygate.language';

let current = 'en';
let catalogue = {};

/**
 * The language to start in: the one chosen with the switch before, else the first of the
 * browser's languages we have (any zh-* is Chinese: zh-TW readers read simplified Chinese
 * better than English, more often than not), else English.
 */
export function preferredLanguage(stored = readStored(), browser = navigator.languages ?? [navigator.language]) {
  if (LANGUAGES.includes(stored)) return stored;
  for (const tag of browser) {
    const lower = String(tag).toLowerCase();
    if (lower === 'zh' || lower.startsWith('zh-')) return 'zh-CN';
    if (lower === 'en' || lower.startsWith('en-')) return 'en';
  }
  return 'en';
}

function readStored() {
  try {
    return localStorage.getItem(LANGUAGE_SLOT);
  } catch {
    return null; // storage disabled: the browser's languages decide
  }
}

/** Loads `language`'s catalogue and makes it the one `t` reads. */
export async function useLanguage(language) {
  const chosen = LANGUAGES.includes(language) ? language : LANGUAGES[0];
  const response = await fetch(`/console/${chosen}.json`, { cache: 'no-store', credentials: 'omit' });
  if (!response.ok) throw new Error(`catalogue ${chosen}: HTTP ${response.status}`);
  catalogue = await response.json();
  current = chosen;
  document.documentElement.lang = chosen;
}

/** Remembers the switch's choice for the next visit. */
export function rememberLanguage(language) {
  try {
    localStorage.setItem(LANGUAGE_SLOT, language);
  } catch {
    // storage disabled: the choice lasts for this page only
  }
}

/** The language in use. */
export const language = () => current;

/** Whether the catalogue has `key`. */
export const has = (key) => Object.hasOwn(catalogue, key);

/**
 * The text of `key` with `{name}` placeholders filled from `values`. A missing key shows as
 * ⟦key⟧, so a gap is visible on the page (and the browser test looks for it) rather than blank.
 */
export function t(key, values = {}) {
  const text = has(key) ? catalogue[key] : `⟦${key}⟧`;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (Object.hasOwn(values, name) ? String(values[name]) : whole));
}

/**
 * The word for an API code of a group (`order_status`, `category`, …), or the code itself when
 * the catalogue does not know it: a code added to the API later still shows, untranslated.
 */
export function label(group, code) {
  if (code === null || code === undefined || code === '') return '';
  const key = `${group}.${code}`;
  return has(key) ? catalogue[key] : String(code);
}

/**
 * Fills every element that names a key: `data-i18n` its text, `data-i18n-placeholder`,
 * `data-i18n-title` and `data-i18n-aria-label` those attributes. A select of API codes,
 * `data-i18n-codes="group" data-values="code …"`, gets one option per code worded by `label`,
 * after an empty "any" option when it has `data-any`.
 */
export function translatePage(root = document) {
  for (const node of root.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  for (const attribute of ['placeholder', 'title', 'aria-label']) {
    for (const node of root.querySelectorAll(`[data-i18n-${attribute}]`)) {
      node.setAttribute(attribute, t(node.getAttribute(`data-i18n-${attribute}`)));
    }
  }
  for (const select of root.querySelectorAll('select[data-i18n-codes]')) {
    const chosen = select.value;
    const codes = select.dataset.values.split(/\s+/).filter(Boolean);
    const options = codes.map((code) => new Option(label(select.dataset.i18nCodes, code), code));
    if (select.hasAttribute('data-any')) options.unshift(new Option(t('common.any'), ''));
    select.replaceChildren(...options);
    select.value = chosen;
  }
  document.title = t('app.title');
}
