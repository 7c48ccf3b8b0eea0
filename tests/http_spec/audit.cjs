// Runs graphql-http's server audits against a URL and prints their results as JSON.
// usage: node audit.cjs <graphql-http package folder> <url>
const { serverAudits } = require(process.argv[2]);

(async () => {
  const results = [];
  for (const audit of serverAudits({ url: process.argv[3] })) {
    const { id, name, status, reason } = await audit.fn();
    results.push({ id, name, status, reason });
  }
  console.log(JSON.stringify(results));
})();
