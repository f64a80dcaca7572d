// @hey-api/openapi-ts: the REST client generated from the server's OpenAPI document,
// with `.js` in its imports so that the compiled package runs in Node.js as ES modules.
export default {
  input: '../../openapi/openapi.yaml',
  output: { path: 'src/generated/rest', importFileExtension: '.js' },
};
