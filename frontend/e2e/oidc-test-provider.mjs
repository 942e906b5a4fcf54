// A real OpenID provider for the end-to-end tests: npm `oidc-provider` with its development login
// screens ("devInteractions"), one public client (authorization code + PKCE, no secret), accounts
// from a fixed table, and an RS256 signing key generated at start.
//
//   import { startOidcProvider } from "./oidc-test-provider.mjs";
//   const op = await startOidcProvider({ redirectUris: ["http://127.0.0.1:8080/"] });
//   op.issuer, op.clientId, op.stop()
//
// The dev login form takes any password for a known login (alice, bob); an unknown login ends on
// the provider's error page.
import http from "node:http";
import crypto from "node:crypto";
import Provider from "oidc-provider";

export const ACCOUNTS = {
  // login name typed into the dev form -> claims
  alice: { email: "alice@example.com", email_verified: true, name: "Alice Admin", groups: ["admin"] },
  bob: { email: "bob@example.com", email_verified: true, name: "Bob User", groups: [] },
};

export async function startOidcProvider({
  port = 0,
  clientId = "conversa-web",
  redirectUris,
  postLogoutRedirectUris = [],
  idTokenTtl = 900,
} = {}) {
  const server = http.createServer();
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  const issuer = `http://127.0.0.1:${server.address().port}`;

  const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  const signingKey = { ...privateKey.export({ format: "jwk" }), kid: crypto.randomUUID(), alg: "RS256", use: "sig" };

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        token_endpoint_auth_method: "none", // public client: PKCE is then required
        grant_types: ["authorization_code", "refresh_token"],
        response_types: ["code"],
        redirect_uris: redirectUris,
        post_logout_redirect_uris: postLogoutRedirectUris,
      },
    ],
    jwks: { keys: [signingKey] },
    cookies: { keys: [crypto.randomBytes(32).toString("base64url")] },
    // Scope "groups" releases the groups claim; conformIdTokenClaims=false puts scope claims into
    // the ID token of the code flow (not only into userinfo).
    claims: {
      openid: ["sub"],
      email: ["email", "email_verified"],
      profile: ["name"],
      groups: ["groups"],
    },
    scopes: ["openid", "email", "profile", "groups"],
    // Like Cognito: a refresh token with every code grant, without `offline_access` + `prompt=consent`.
    async issueRefreshToken(_ctx, client) {
      return client.grantTypeAllowed("refresh_token");
    },
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    ttl: {
      AccessToken: 900,
      IdToken: idTokenTtl,
      AuthorizationCode: 60,
      RefreshToken: 86400,
      Interaction: 600,
      Session: 86400,
      Grant: 86400,
    },
    // A first-party app: no consent screen (Cognito's managed login has none either). The grant
    // covers the scopes this client may ask for.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      const existing = grantId && (await ctx.oidc.provider.Grant.find(grantId));
      if (existing) return existing;
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope("openid email profile groups");
      await grant.save();
      return grant;
    },
    async findAccount(_ctx, id) {
      const claims = ACCOUNTS[id];
      if (!claims) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, ...claims };
        },
      };
    },
    // CORS for the token endpoint from the app's origin (the default for public clients, stated).
    clientBasedCORS(_ctx, origin, client) {
      return client.redirectUris.some((u) => new URL(u).origin === origin);
    },
  });
  provider.proxy = false;
  server.on("request", provider.callback());

  return {
    issuer,
    clientId,
    provider,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(resolve);
      }),
  };
}
