// A real OpenID Connect provider (npm `oidc-provider`, a certified implementation) for the single
// sign-on tests. Every start signs with a fresh RSA key named `kid`, so restarting it with
// another kid is a key rotation.
//
//   node oidc_provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI KID ID_TOKEN_TTL_SECS
//
// Accounts: any login name with any password (the provider's development login page); the
// `groups` claim comes from GROUPS below.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const [port, clientId, clientSecret, redirectUri, kid, idTokenTtl] = process.argv.slice(2);
const GROUPS = { 'acme-admin': ['flowgate-acme'], ops: ['flowgate-ops', 'everyone'], stranger: ['everyone-else'] };

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
  ],
  jwks: { keys: [jwk] },
  conformIdTokenClaims: false,
  claims: { openid: ['sub'], email: ['email'], profile: ['name', 'groups'] },
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: `${id}@example.com`, name: id, groups: GROUPS[id] ?? [] }),
  }),
  ttl: { IdToken: Number(idTokenTtl) },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['flowgate-test-cookie-key'] },
  pkce: { required: () => true },
});
provider.listen(Number(port), '127.0.0.1', () => console.log(`listening ${port}`));
