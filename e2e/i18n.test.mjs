// Unit checks of the console's language choice, imported from the very file the gateway serves.
import { LANGUAGES, preferredLanguage } from '../crates/gateway/src/console/assets/i18n.js';
import { check, equal } from './harness.mjs';

export async function i18nChecks() {
  await check('the browser language chooses: any zh-* is Chinese, then English', () => {
    equal(LANGUAGES.join(','), 'en,zh-CN');
    equal(preferredLanguage(null, ['zh-CN', 'en-US']), 'zh-CN');
    equal(preferredLanguage(null, ['zh-TW']), 'zh-CN', 'traditional Chinese readers');
    equal(preferredLanguage(null, ['zh']), 'zh-CN');
    equal(preferredLanguage(null, ['en-GB', 'zh-CN']), 'en', 'the first language we have wins');
    equal(preferredLanguage(null, ['fr-FR', 'zh-HK']), 'zh-CN', 'a later Chinese beats no match');
    equal(preferredLanguage(null, ['fr-FR', 'de']), 'en', 'nothing we have: English');
    equal(preferredLanguage(null, []), 'en');
    equal(preferredLanguage(null, ['zhx-foo']), 'en', 'not Chinese, only starts with zh');
  });
  await check('the switch remembered beats the browser; a stored value we do not have does not', () => {
    equal(preferredLanguage('en', ['zh-CN']), 'en');
    equal(preferredLanguage('zh-CN', ['en-US']), 'zh-CN');
    equal(preferredLanguage('ja', ['zh-CN']), 'zh-CN');
    equal(preferredLanguage('', ['en-US']), 'en');
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { finish } = await import('./harness.mjs');
  await i18nChecks();
  process.exit(finish());
}
