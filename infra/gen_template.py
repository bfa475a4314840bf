"""Writes infra/resources.json, the merge template for `chalice package --merge-template`.

The template is JSON (what Chalice merges); this script is its readable source, so the
repetitive parts (per-function event sources and roles) are written once. Run
`make infra` after editing; a unit test fails if the two disagree.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

try:
    from infra import iam
except ModuleNotFoundError:  # run as a script: python infra/gen_template.py
    import iam  # type: ignore[no-redef]

OUT = Path(__file__).with_name("resources.json")
ROOT = Path(__file__).resolve().parent.parent

# Functions Chalice generates from app.py, by logical id, and what each consumes.
STREAM_FUNCTIONS = {"OnMemberStream": "MembersTable"}
QUEUE_FUNCTIONS = {"OnMessage": "MessagesQueue", "OnJobTask": "JobsQueue"}
ALL_FUNCTIONS = [
    "APIHandler",
    "OnMemberStream",
    "OnMessage",
    "OnJobTask",
    "BirthdayGreetings",
    "PointsExpiry",
    "ExpiryReminders",
    "TierReview",
    "ReleasePaymentHolds",
]
ROLE_OF = {"APIHandler": "ApiHandlerRole"}
# Secrets reach only the functions infra/iam.py names (iam.SECRETS), never Globals.
SECRET_ENV = {
    # The secret's ARN, not its value: the function reads it at run time (GetSecretValue,
    # cached per container), so the key is never a plaintext environment variable.
    "PII_HASH_KEY_SECRET_ID": {"Ref": "PiiHashKey"},
    "PAYMENT_NOTIFICATION_SECRET_ID": {"Ref": "PaymentNotificationSecret"},
}


def table(
    env_var: str,
    *,
    key: tuple[str, ...] = ("pk", "sk"),
    stream: bool = False,
    ttl: str | None = None,
    gsis: list[dict[str, Any]] | None = None,
    extra_attrs: list[str] | None = None,
) -> dict[str, Any]:
    attrs = [*key, *(extra_attrs or [])]
    props: dict[str, Any] = {
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in attrs],
        "KeySchema": [
            {"AttributeName": name, "KeyType": kind}
            for name, kind in zip(key, ("HASH", "RANGE"), strict=False)
        ],
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": {"SSEEnabled": True},
    }
    if gsis:
        props["GlobalSecondaryIndexes"] = gsis
    if stream:
        props["StreamSpecification"] = {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    if ttl:
        props["TimeToLiveSpecification"] = {"AttributeName": ttl, "Enabled": True}
    return {
        "Type": "AWS::DynamoDB::Table",
        # Members' points are money-equivalent: a stack deletion must never drop them.
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        # Read by the local stack and the tests: which environment variable names it.
        "Metadata": {"EnvVar": env_var},
        "Properties": props,
    }


def gsi(
    name: str, hash_key: str, range_key: str, include: list[str] | None = None
) -> dict[str, Any]:
    # Never ALL: with ALL, every balance change of a member would also write the index.
    # KEYS_ONLY/INCLUDE indexes are written only when their keys or copied fields change.
    projection: dict[str, Any] = (
        {"ProjectionType": "INCLUDE", "NonKeyAttributes": include}
        if include
        else {"ProjectionType": "KEYS_ONLY"}
    )
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": range_key, "KeyType": "RANGE"},
        ],
        "Projection": projection,
    }


def queue(
    env_var: str | None, dlq: str, *, visibility: int = 180, receives: int = 5
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {
            # At least 6x the consumer's timeout, as Lambda's SQS integration advises.
            "VisibilityTimeout": visibility,
            "MessageRetentionPeriod": 345600,
            "SqsManagedSseEnabled": True,
            "RedrivePolicy": {
                "deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
                "maxReceiveCount": receives,
            },
        },
    }
    if env_var:
        out["Metadata"] = {"EnvVar": env_var}
    return out


def dlq() -> dict[str, Any]:
    return {
        "Type": "AWS::SQS::Queue",
        "Properties": {"MessageRetentionPeriod": 1209600, "SqsManagedSseEnabled": True},
    }


def dlq_alarm(queue_id: str) -> dict[str, Any]:
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": f"Messages waiting in {queue_id}: an async step failed for good",
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}],
            "Statistic": "Maximum",
            "Period": 300,
            "EvaluationPeriods": 1,
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
        },
    }


def gateway_response(
    kind: str, code: str, message: str, status: int | None = None
) -> dict[str, Any]:
    # API Gateway's own errors (bad token, unknown route, throttling) in the api.md error
    # envelope. The local API server (local/api_server.py) answers with these same
    # resources where it stands in for the gateway.
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}})
    props: dict[str, Any] = {
        "RestApiId": {"Ref": "RestAPI"},
        "ResponseType": kind,
        "ResponseTemplates": {"application/json": body},
    }
    if status is not None:
        props["StatusCode"] = str(status)
    return {"Type": "AWS::ApiGateway::GatewayResponse", "Properties": props}


# ---- IAM: one role per function, its permissions from infra/iam.py -----------------


ACCOUNT_ROOT = "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"
# Resources whose ARN is their Ref (GetAtt Arn does not exist for them).
REF_IS_ARN = {"PiiHashKey", "PaymentNotificationSecret"}


def _arn(resource: str) -> Any:
    if resource in REF_IS_ARN:
        return {"Ref": resource}
    if resource.endswith("/stream"):
        return {"Fn::Sub": "${" + resource.removesuffix("/stream") + ".Arn}/stream/*"}
    if "/index/" in resource:
        table_id, index = resource.split("/index/")
        return {"Fn::Sub": "${" + table_id + ".Arn}/index/" + index}
    return {"Fn::GetAtt": [resource, "Arn"]}


def access_policy(function: str) -> dict[str, Any]:
    """The function's own managed policy: exactly the grants infra/iam.py declares."""
    statements: list[dict[str, Any]] = []
    for grant in iam.ACCESS[function]:
        statement: dict[str, Any] = {
            "Effect": "Allow",
            "Action": list(grant.actions),
            "Resource": _arn(grant.resource),
        }
        if grant.keys:
            statement["Condition"] = {
                "ForAllValues:StringLike": {"dynamodb:LeadingKeys": list(grant.keys)}
            }
        statements.append(statement)
    return {
        "Type": "AWS::IAM::ManagedPolicy",
        "Properties": {
            "Description": f"What {function} may do with the loyalty data (infra/iam.py)",
            "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
        },
    }


def access_policy_id(function: str) -> str:
    return f"{function}Access"


def function_overrides() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fn, table_id in STREAM_FUNCTIONS.items():
        out[fn] = {
            "Properties": {
                "Events": {
                    f"{fn}DynamodbEventSource": {
                        "Properties": {
                            "Stream": {"Fn::GetAtt": [table_id, "StreamArn"]},
                            "StartingPosition": "TRIM_HORIZON",
                            "FunctionResponseTypes": ["ReportBatchItemFailures"],
                            "MaximumRetryAttempts": 10,
                            "BisectBatchOnFunctionError": True,
                            "DestinationConfig": {
                                "OnFailure": {
                                    "Type": "SQS",
                                    "Destination": {"Fn::GetAtt": ["MemberStreamDLQ", "Arn"]},
                                }
                            },
                        }
                    }
                }
            }
        }
    for fn, queue_id in QUEUE_FUNCTIONS.items():
        out[fn] = {
            "Properties": {
                "Events": {
                    f"{fn}SqsEventSource": {
                        "Properties": {
                            "Queue": {"Fn::GetAtt": [queue_id, "Arn"]},
                            "FunctionResponseTypes": ["ReportBatchItemFailures"],
                        }
                    }
                }
            }
        }
    for fn in ALL_FUNCTIONS:
        # Chalice gives each function its own role (autogen_policy: false) with the
        # stage's policy file inline (logs, traces); data access is the function's own.
        role = ROLE_OF.get(fn, f"{fn}Role")
        out[role] = {"Properties": {"ManagedPolicyArns": [{"Ref": access_policy_id(fn)}]}}
        out[access_policy_id(fn)] = access_policy(fn)
    for variable, functions in iam.SECRETS.items():
        for fn in functions:
            props = out.setdefault(fn, {}).setdefault("Properties", {})
            variables = props.setdefault("Environment", {}).setdefault("Variables", {})
            variables[variable] = SECRET_ENV[variable]
    return out


# ---- the public API: an HTTP API in front of the function Chalice's REST API calls -----

# Chalice emits a REST API only. An HTTP API costs $1.00 per million requests against
# REST's $3.50, and with payload format 1.0 it hands the function the event shape Chalice
# dispatches on (requestContext.resourcePath + httpMethod). Which one a stage exposes is
# the template parameter PublicApi (README, Operations: what each keeps and loses).
PUBLIC_API_PARAMETER = {
    "Type": "String",
    "AllowedValues": ["http", "rest"],
    "Default": "http",
    "Description": (
        "The API clients call: 'http' (HTTP API, payload 1.0; the REST API's endpoint is "
        "switched off) or 'rest' (the REST API Chalice generates, with its Cognito "
        "authorizer and gateway responses)"
    ),
}
# The gateway's and the WAF's limits (docs/architecture.md, "Rate limits"): coarse
# floors under the app's per-store and per-member limits (chalicelib/domain/limits.py),
# which must stay the tighter ones, so that a client normally meets the app's 429 with
# its Retry-After first.
THROTTLE_PARAMETERS = {
    "ApiThrottleRate": {
        "Type": "Number",
        "Default": 500,
        "MinValue": 1,
        "Description": "The public API stage's steady request rate, per second, all callers",
    },
    "ApiThrottleBurst": {
        "Type": "Number",
        "Default": 1000,
        "MinValue": 1,
        "Description": "The public API stage's burst (token bucket size), all callers",
    },
    "WafRequestsPerIp": {
        "Type": "Number",
        "Default": 6000,
        "MinValue": 10,
        "Description": (
            "Requests one IP address may send in 5 minutes before the WAF blocks it "
            "(a store's tills share one address: keep it above 5x the store's per-minute "
            "limit, 600)"
        ),
    },
}
HTTP_API = "UseHttpApi"  # the condition
REST_API = "UseRestApi"  # its opposite


def chalice_routes() -> list[tuple[str, str]]:
    """(method, path) of every route app.py declares."""
    if str(ROOT) not in sys.path:  # run as a script
        sys.path.insert(0, str(ROOT))
    from app import app  # importing app reads no settings (see app.py)

    return sorted((method, path) for path, by_method in app.routes.items() for method in by_method)


def route_id(path: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", path)
    return "HttpRoute" + "".join(w[:1].upper() + w[1:] for w in words)


def http_api() -> dict[str, Any]:
    """One `ANY <path>` route per Chalice path, not a greedy `/{proxy+}`: Chalice finds
    the view by the event's resourcePath, which is the matched route's path. ANY, not one
    route per method: a method the path lacks then reaches Chalice, which answers 405
    METHOD_NOT_ALLOWED in the api.md envelope instead of the gateway's bare 404."""
    resources: dict[str, Any] = {
        "HttpApi": {
            "Type": "AWS::ApiGatewayV2::Api",
            "Condition": HTTP_API,
            "Properties": {
                "Name": {"Fn::Sub": "${AWS::StackName}-http"},
                "ProtocolType": "HTTP",
                "Description": "The loyalty API (payload 1.0 to the APIHandler function)",
            },
        },
        "HttpApiIntegration": {
            "Type": "AWS::ApiGatewayV2::Integration",
            "Condition": HTTP_API,
            "Properties": {
                "ApiId": {"Ref": "HttpApi"},
                "IntegrationType": "AWS_PROXY",
                "IntegrationUri": {"Fn::GetAtt": ["APIHandler", "Arn"]},
                "PayloadFormatVersion": "1.0",
                "TimeoutInMillis": 29000,  # as the REST API's integrations
            },
        },
        # `$default`: served at the API's root, so paths carry no stage prefix.
        "HttpApiStage": {
            "Type": "AWS::ApiGatewayV2::Stage",
            "Condition": HTTP_API,
            "Properties": {
                "ApiId": {"Ref": "HttpApi"},
                "StageName": "$default",
                "AutoDeploy": True,
                "DefaultRouteSettings": {
                    "ThrottlingRateLimit": {"Ref": "ApiThrottleRate"},
                    "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurst"},
                },
            },
        },
        "HttpApiInvokePermission": {
            "Type": "AWS::Lambda::Permission",
            "Condition": HTTP_API,
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": {"Ref": "APIHandler"},
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": {
                    "Fn::Sub": (
                        "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}"
                        ":${HttpApi}/*"
                    )
                },
            },
        },
    }
    # No JWT authorizer: the app verifies every token itself (chalicelib/auth.py) and
    # answers a bad one in the api.md envelope; an HTTP API authorizer would answer
    # {"message": "Unauthorized"} instead, and POS routes could not use it anyway.
    for path in sorted({path for _, path in chalice_routes()}):
        resources[route_id(path)] = {
            "Type": "AWS::ApiGatewayV2::Route",
            "Condition": HTTP_API,
            "Properties": {
                "ApiId": {"Ref": "HttpApi"},
                "RouteKey": f"ANY {path}",
                "Target": {"Fn::Sub": "integrations/${HttpApiIntegration}"},
            },
        }
    return resources


def waf() -> dict[str, Any]:
    """A regional web ACL with one rate-based rule per client IP, in front of the REST
    API's stage (WAF cannot attach to an HTTP API: with PublicApi=http only the gateway's
    stage throttling and the app's limits stand) and of the user pool (sign-up and
    sign-in send SMS: the cheapest flood to pay for). Blocked requests get 429 in the
    api.md envelope; WAF cannot send a plain Retry-After (it prefixes custom headers)."""
    body = json.dumps(
        {
            "error": {
                "code": "RATE_LIMITED",
                "message": "too many requests from this address",
                "details": {},
            }
        }
    )
    visibility = {
        "SampledRequestsEnabled": True,
        "CloudWatchMetricsEnabled": True,
    }
    return {
        "ApiWebAcl": {
            "Type": "AWS::WAFv2::WebACL",
            "Properties": {
                "Scope": "REGIONAL",
                "Description": "Per-IP request rate limit for the loyalty API and user pool",
                "DefaultAction": {"Allow": {}},
                "CustomResponseBodies": {
                    "RateLimited": {"ContentType": "APPLICATION_JSON", "Content": body}
                },
                "Rules": [
                    {
                        "Name": "RequestsPerIp",
                        "Priority": 0,
                        "Statement": {
                            "RateBasedStatement": {
                                "Limit": {"Ref": "WafRequestsPerIp"},
                                "AggregateKeyType": "IP",
                            }
                        },
                        "Action": {
                            "Block": {
                                "CustomResponse": {
                                    "ResponseCode": 429,
                                    "CustomResponseBodyKey": "RateLimited",
                                }
                            }
                        },
                        "VisibilityConfig": {**visibility, "MetricName": "RequestsPerIp"},
                    }
                ],
                "VisibilityConfig": {**visibility, "MetricName": "LoyaltyApi"},
            },
        },
        "ApiWebAclRestStage": {
            "Type": "AWS::WAFv2::WebACLAssociation",
            "Condition": REST_API,
            "Properties": {
                "WebACLArn": {"Fn::GetAtt": ["ApiWebAcl", "Arn"]},
                "ResourceArn": {
                    "Fn::Join": [
                        "",
                        [
                            "arn:",
                            {"Ref": "AWS::Partition"},
                            ":apigateway:",
                            {"Ref": "AWS::Region"},
                            "::/restapis/",
                            {"Ref": "RestAPI"},
                            "/stages/",
                            {"Ref": "RestAPI.Stage"},
                        ],
                    ]
                },
            },
        },
        "ApiWebAclUserPool": {
            "Type": "AWS::WAFv2::WebACLAssociation",
            "Properties": {
                "WebACLArn": {"Fn::GetAtt": ["ApiWebAcl", "Arn"]},
                "ResourceArn": {"Fn::GetAtt": ["UserPool", "Arn"]},
            },
        },
    }


# What an app user may write about themselves in the pool, and what tokens may carry.
# Never a `custom:` attribute: those are set by admins only.
CLIENT_WRITE_ATTRIBUTES = ("phone_number",)
CLIENT_READ_ATTRIBUTES = ("phone_number", "phone_number_verified", "custom:store_id")


def template() -> dict[str, Any]:
    resources: dict[str, Any] = {
        "MembersTable": table(
            "MEMBERS_TABLE",
            stream=True,
            gsis=[
                gsi("birthday-index", "birthday_key", "pk", ["member_id", "tier_code"]),
                # sparse: members holding points, keyed by their earliest expiry date
                gsi("expiry-index", "expiry_due", "pk", ["expiry_reminded"]),
                # sparse: members above the base tier, keyed by their review date
                gsi("review-index", "review_due", "pk"),
                # sparse: coupon items only (COUPON#<code>), a member's coupons by issue
                # time; what a listing shows is copied (a use rewrites the index entry)
                gsi(
                    "coupon-index",
                    "coupon_owner",
                    "issued_at",
                    ["template_id", "status", "valid_from", "valid_to", "used_at"],
                ),
            ],
            extra_attrs=["birthday_key", "expiry_due", "review_due", "coupon_owner", "issued_at"],
        ),
        "ProgramTable": table("PROGRAM_TABLE"),
        "RuntimeTable": table("RUNTIME_TABLE", ttl="expires_at"),
        # Message deliveries (powertools idempotency: key `id`, TTL `expiration`). A table
        # of its own: in a table keyed pk+sk, powertools puts every record under one
        # static partition key, a hot partition for every message sent.
        "IdempotencyTable": table("IDEMPOTENCY_TABLE", key=("id",), ttl="expiration"),
        "MessagesQueue": queue("MESSAGES_QUEUE_URL", "MessagesDLQ"),
        "MessagesDLQ": dlq(),
        # Job tasks (expiry, tier recalculation) run up to 5 minutes: 6x that.
        "JobsQueue": queue("JOBS_QUEUE_URL", "JobsDLQ", visibility=1800),
        "JobsDLQ": dlq(),
        "JobsDLQAlarm": dlq_alarm("JobsDLQ"),
        "MemberStreamDLQ": dlq(),
        "MessagesDLQAlarm": dlq_alarm("MessagesDLQ"),
        "MemberStreamDLQAlarm": dlq_alarm("MemberStreamDLQ"),
        "EventBus": {
            "Type": "AWS::Events::EventBus",
            "Properties": {"Name": {"Fn::Sub": "${AWS::StackName}-events"}},
        },
        # The root key of personal data at rest: it wraps only the program's
        # key-encryption key (chalicelib/dal/crypto.py), so KMS is called about once per
        # container per 15 minutes. Rotated yearly by KMS (old versions still decrypt).
        "PiiKey": {
            "Type": "AWS::KMS::Key",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Metadata": {"EnvVar": "PII_KMS_KEY_ID"},
            "Properties": {
                "Description": "Wraps the loyalty program's key-encryption key (personal data)",
                "EnableKeyRotation": True,
                "PendingWindowInDays": 30,
                "KeyPolicy": {
                    "Version": "2012-10-17",
                    # The account administers the key; the functions' roles (infra/iam.py)
                    # say who may use it.
                    "Statement": [
                        {
                            "Sid": "AccountAdministersTheKey",
                            "Effect": "Allow",
                            "Principal": {"AWS": {"Fn::Sub": ACCOUNT_ROOT}},
                            "Action": "kms:*",
                            "Resource": "*",
                        }
                    ],
                },
            },
        },
        "PiiHashKey": {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {
                "Description": "HMAC key for phone and external-id look-up hashes",
                "GenerateSecretString": {"PasswordLength": 48, "ExcludePunctuation": True},
            },
        },
        # Shared with the payment provider: it signs payment notifications with it.
        "PaymentNotificationSecret": {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {
                "Description": "HMAC key the payment provider signs payment notifications with",
                "GenerateSecretString": {"PasswordLength": 48, "ExcludePunctuation": True},
            },
        },
        # Which member a token acts for is decided by the app from the sign-in's `sub`
        # (the `cognito_sub` identity item), so the pool holds no member id at all.
        # `custom:store_id` scopes store staff: only admins set it
        # (AdminUpdateUserAttributes), because no app client may write a custom attribute.
        "UserPool": {
            "Type": "AWS::Cognito::UserPool",
            "Properties": {
                "UsernameAttributes": ["phone_number"],
                "AutoVerifiedAttributes": ["phone_number"],
                # A new phone number takes effect only once verified: until then tokens
                # keep the old, verified one (sign-up registers only a verified phone).
                "UserAttributeUpdateSettings": {
                    "AttributesRequireVerificationBeforeUpdate": ["phone_number"]
                },
                "Schema": [
                    {"Name": "store_id", "AttributeDataType": "String", "Mutable": True},
                ],
            },
        },
        "UserPoolClient": {
            "Type": "AWS::Cognito::UserPoolClient",
            "Properties": {
                "UserPoolId": {"Ref": "UserPool"},
                "GenerateSecret": False,
                "ExplicitAuthFlows": ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
                # Without these lists a client may read and write every attribute,
                # custom ones included (UpdateUserAttributes with the user's own token).
                "WriteAttributes": list(CLIENT_WRITE_ATTRIBUTES),
                "ReadAttributes": list(CLIENT_READ_ATTRIBUTES),
            },
        },
        "Gateway4xx": gateway_response("DEFAULT_4XX", "BAD_REQUEST", "request refused"),
        "Gateway5xx": gateway_response(
            "DEFAULT_5XX", "INTERNAL_ERROR", "an internal error occurred"
        ),
        # The code the app gives a token it refuses, so a client sees one code for a bad
        # token whether the authorizer or the app refused it.
        "GatewayUnauthorized": gateway_response(
            "UNAUTHORIZED", "INVALID_TOKEN", "missing or invalid token"
        ),
        # API Gateway's 403 "Missing Authentication Token" for a path (or a method of a
        # path) the API does not have: a 404 in our envelope.
        "GatewayUnknownRoute": gateway_response(
            "MISSING_AUTHENTICATION_TOKEN", "NOT_FOUND", "no route for this method and path", 404
        ),
        "GatewayThrottled": gateway_response("THROTTLED", "RATE_LIMITED", "too many requests"),
        "RestAPI": {
            "Properties": {
                # One public API per stage: with the HTTP API, the REST API's URL answers
                # nothing (and bills nothing).
                "DisableExecuteApiEndpoint": {"Fn::If": [HTTP_API, True, False]},
                # The stage's throttling, as the HTTP API's (THROTTLE_PARAMETERS).
                "MethodSettings": [
                    {
                        "ResourcePath": "/*",
                        "HttpMethod": "*",
                        "ThrottlingRateLimit": {"Ref": "ApiThrottleRate"},
                        "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurst"},
                    }
                ],
                "DefinitionBody": {
                    "securityDefinitions": {
                        "LoyaltyUserPool": {
                            "x-amazon-apigateway-authorizer": {
                                "providerARNs": [{"Fn::GetAtt": ["UserPool", "Arn"]}]
                            }
                        }
                    }
                },
            }
        },
    }
    for group in ("ops", "admin", "store_staff"):
        resources[f"UserPoolGroup{group.title().replace('_', '')}"] = {
            "Type": "AWS::Cognito::UserPoolGroup",
            "Properties": {"GroupName": group, "UserPoolId": {"Ref": "UserPool"}},
        }
    resources.update(http_api())
    resources.update(waf())
    resources.update(function_overrides())
    env = {
        meta_env: ({"Ref": rid})
        for rid, res in resources.items()
        if (meta_env := res.get("Metadata", {}).get("EnvVar"))
    }
    env.update(
        {
            "EVENT_BUS_NAME": {"Ref": "EventBus"},
            "COGNITO_USER_POOL_ID": {"Ref": "UserPool"},
            "COGNITO_APP_CLIENT_ID": {"Ref": "UserPoolClient"},
        }
    )
    return {
        "Parameters": {"PublicApi": PUBLIC_API_PARAMETER, **THROTTLE_PARAMETERS},
        "Conditions": {
            HTTP_API: {"Fn::Equals": [{"Ref": "PublicApi"}, "http"]},
            REST_API: {"Fn::Not": [{"Condition": HTTP_API}]},
        },
        "Globals": {"Function": {"Environment": {"Variables": env}}},
        "Resources": resources,
        "Outputs": {
            "MembersTableName": {"Value": {"Ref": "MembersTable"}},
            "UserPoolId": {"Value": {"Ref": "UserPool"}},
            "UserPoolClientId": {"Value": {"Ref": "UserPoolClient"}},
            "EventBusName": {"Value": {"Ref": "EventBus"}},
            # Chalice's output for the REST API's URL, which PublicApi=http switches off.
            "EndpointURL": {"Condition": REST_API},
            "HttpApiUrl": {
                "Condition": HTTP_API,
                "Value": {"Fn::GetAtt": ["HttpApi", "ApiEndpoint"]},
            },
        },
    }


def render() -> str:
    return json.dumps(template(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
